"""The model side of fine-tuning: wrap it for the method, the answer-token loss, save the result.

``lora``/``vlguard`` wrap the model in a PEFT LoRA model whose adapters sit inside the language
model only; ``full`` unfreezes the language model and the output head.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from interp.errors import VSFAError
from interp.train.config import TrainConfig
from interp.train.data import IGNORE_INDEX


def module_prefix(model: nn.Module, module: nn.Module) -> str:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name
    raise VSFAError("the language model is not a sub-module of the loaded model")


def lora_target_regex(vlm: Any, targets: list[str] | None) -> str:
    """A PEFT ``target_modules`` regex: the named projections inside the language model only.

    Vision towers use the same projection names (``q_proj`` ...); VSFA adapts the language model.
    """
    names = list(targets or vlm.family.lora_targets)
    model = vlm.model
    prefix = module_prefix(model, vlm.family.language_model(model))
    alternatives = "|".join(re.escape(n) for n in names)
    pattern = rf"{re.escape(prefix)}\.(?:.*\.)?(?:{alternatives})"
    matched = [n for n, _ in model.named_modules() if re.fullmatch(pattern, n)]
    if not matched:
        raise VSFAError(
            f"--lora-targets {','.join(names)} match no module of the language model of "
            f"{vlm.name_or_path} ({vlm.family.name}); choose linear layer names inside "
            f"{prefix} (e.g. q_proj, v_proj)"
        )
    non_linear = [n for n in matched if not isinstance(model.get_submodule(n), nn.Linear)]
    if non_linear:
        raise VSFAError(
            f"--lora-targets must name linear layers; {non_linear[0]} is "
            f"{type(model.get_submodule(non_linear[0])).__name__}"
        )
    return pattern


def prepare_model(vlm: Any, config: TrainConfig) -> nn.Module:
    """Wrap the model for the method: a PEFT LoRA model, or the unfrozen language model."""
    model = vlm.model
    if hasattr(model, "peft_config"):
        raise VSFAError(
            f"{vlm.name_or_path} already carries an adapter; train from the base model "
            "(or merge the adapter first)"
        )
    model.requires_grad_(False)
    if config.uses_lora:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=lora_target_regex(vlm, config.lora_targets),
            bias="none",
        )
        model = get_peft_model(model, lora)
    else:
        vlm.family.language_model(model).requires_grad_(True)
        model.get_output_embeddings().requires_grad_(True)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    model.config.use_cache = False
    vlm.model = model
    return model


def answer_loss_sum(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed next-token cross-entropy over the answer tokens of a batch (float32).

    Only the positions that predict an answer token go through the output head
    (``logits_to_keep`` as a boolean mask), which matters with large vocabularies and long
    image prompts.
    """
    labels = batch.pop("labels")
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    keep = torch.cat([mask, torch.zeros_like(mask[:, :1])], dim=1)
    logits = model(**batch, use_cache=False, logits_to_keep=keep).logits
    if logits.dim() == 3:  # a model that ignores a mask keeps every position
        logits = logits[:, :-1][mask]
    return nn.functional.cross_entropy(logits.float(), targets[mask], reduction="sum")


def save_result(vlm: Any, model: nn.Module, config: TrainConfig, out: Path) -> None:
    """Write ``out/adapter`` (LoRA) or ``out/model`` (full, with the processor), atomically."""
    target = out / ("adapter" if config.uses_lora else "model")
    tmp = out / f".{target.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.config.use_cache = True
    model.save_pretrained(tmp, safe_serialization=True)
    if not config.uses_lora:
        vlm.processor.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
