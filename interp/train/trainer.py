"""Fine-tune a VLM on conversations: VSFA (LoRA or full) and the VLGuard baseline.

One plain training loop over pre-tokenised examples (the models are ``transformers`` models and
the adapters ``peft`` ones). The loss is the token-weighted cross-entropy on response tokens over
each optimizer step (gradient accumulation divides by the step's answer-token count, so
accumulating is the same as a larger batch). Checkpoints every ``save_every`` steps let a killed
run continue to the same final weights as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from interp.artifacts import (
    MANIFEST,
    file_sha256,
    json_sha256,
    make_manifest,
    manifest_key,
    output_is_current,
    read_json,
    write_json_atomic,
)
from interp.errors import VSFAError
from interp.train.checkpoint import (
    CHECKPOINTS,
    checkpoint_key,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from interp.train.config import TrainConfig
from interp.train.data import (
    IGNORE_INDEX,
    Example,
    answer_tokens,
    collate,
    read_vlguard_examples,
    read_vqa_examples,
    subset,
    tokenize_examples,
)

LOSS_CURVE = "loss_curve.json"


# ---- inputs and manifest -------------------------------------------------------------------
def _model_fingerprint(model: str) -> str:
    """Hash of a local model's config and weight files (names, sizes); the id for hub models."""
    path = Path(model)
    if not path.is_dir():
        return model
    files = sorted(p for p in path.iterdir() if p.is_file())
    listing = [(p.name, p.stat().st_size) for p in files]
    config = path / "config.json"
    return json_sha256(
        {"files": listing, "config": file_sha256(config) if config.exists() else None}
    )


def world_size() -> int:
    """Processes of a multi-GPU launch (``accelerate launch`` / ``torchrun``); 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def train_manifest(config: TrainConfig) -> dict[str, Any]:
    inputs = {"model": _model_fingerprint(config.model)}
    result = config.result_dict()
    if world_size() > 1:  # the data order and effective batch depend on the process count
        result["world_size"] = world_size()
    if config.data is not None:
        data = Path(config.data)
        if not data.is_file():
            raise VSFAError(f"--data {data} does not exist")
        inputs["data"] = file_sha256(data)
    return make_manifest("train", result, inputs=inputs, seed=config.seed)


def load_examples(config: TrainConfig) -> list[Example]:
    assert config.data is not None
    if config.method == "vlguard":
        examples = read_vlguard_examples(config.data, config.image_root)
    else:
        examples = read_vqa_examples(config.data)
    return subset(examples, config.limit, config.seed)


# ---- model preparation ---------------------------------------------------------------------
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


# ---- loss ----------------------------------------------------------------------------------
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


def _micro_order(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


class MicroBatches:
    """Micro-batch index lists by global index; epochs reshuffle with (seed, epoch)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.per_epoch = math.ceil(n / batch_size)
        self._cache: dict[int, list[list[int]]] = {}

    def __getitem__(self, index: int) -> tuple[int, list[int]]:
        epoch, position = divmod(index, self.per_epoch)
        if epoch not in self._cache:
            self._cache = {epoch: _micro_order(self.n, self.batch_size, self.seed, epoch)}
        return epoch, self._cache[epoch][position]


def _oom_error(config: TrainConfig) -> VSFAError:
    hints = [
        f"lower --batch-size (now {config.batch_size}) and raise --grad-accum "
        f"(now {config.grad_accum}) to keep the effective batch",
        "turn on --gradient-checkpointing",
    ]
    if config.method == "full":
        hints.append("use --method lora instead of full fine-tuning")
    else:
        hints.append(f"lower --lora-r (now {config.lora_r}) or --lora-targets")
    hints.append("set --max-length to drop the longest examples")
    return VSFAError("out of GPU memory while training: " + "; ".join(hints))


# ---- the run -------------------------------------------------------------------------------
def _prepare_run_dir(out: Path, key: str, overwrite: bool) -> None:
    manifest_path = out / MANIFEST
    stale = out.exists() and any(out.iterdir())
    if not stale:
        return
    checkpoint = latest_checkpoint(out)
    same = (checkpoint is not None and checkpoint_key(checkpoint) == key) or (
        manifest_path.exists() and manifest_key(read_json(manifest_path)) == key
    )
    if same:
        return
    if not overwrite:
        raise VSFAError(
            f"run folder {out} holds a run made with other arguments; pass --overwrite to "
            "replace it or choose another --out"
        )
    for name in ("adapter", "model", CHECKPOINTS, MANIFEST, LOSS_CURVE):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def train(config: TrainConfig, *, stop_after: int | None = None) -> Path:
    """Run (or resume, or skip when already done) one fine-tuning run; returns the run folder.

    ``stop_after``: stop after this many optimizer steps of this call, leaving a checkpoint
    (a run split across time-limited jobs; running again continues it).
    """
    out = Path(config.out)
    manifest = train_manifest(config)
    state = None
    if world_size() > 1:
        from accelerate import PartialState

        # Joins the process group of `accelerate launch` / `torchrun` (gloo on CPUs).
        state = PartialState(cpu=_on_cpu(config))
        if state.num_processes != world_size():
            raise VSFAError(
                f"WORLD_SIZE={world_size()} but accelerate set up {state.num_processes} "
                "process(es); launch with `accelerate launch` or `torchrun`"
            )
    if output_is_current(out, manifest):
        return out
    key = manifest_key(manifest)
    if state is None or state.is_main_process:
        _prepare_run_dir(out, key, config.overwrite)
        out.mkdir(parents=True, exist_ok=True)
    if state is not None:
        state.wait_for_everyone()
    if config.method == "none":
        if state is None or state.is_main_process:
            manifest.update(complete=True, method="none", base_model=config.model, history=[])
            write_json_atomic(out / MANIFEST, manifest)
        return out
    try:
        with cpu_threads(config.threads):
            return _train(config, out, manifest, key, stop_after)
    except torch.OutOfMemoryError:
        raise _oom_error(config) from None


@contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` intra-op CPU threads, restoring the previous setting after."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _train(
    config: TrainConfig, out: Path, manifest: dict[str, Any], key: str, stop_after: int | None
) -> Path:
    from transformers import get_scheduler

    from interp.models import load_vlm

    started = time.perf_counter()
    torch.manual_seed(config.seed)
    accelerator = None
    if world_size() > 1:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=_on_cpu(config))
    n_proc = 1 if accelerator is None else accelerator.num_processes
    rank = 0 if accelerator is None else accelerator.process_index
    main = rank == 0
    device = config.device if accelerator is None else accelerator.device
    vlm = load_vlm(config.model, device=device, dtype=config.dtype)
    examples = load_examples(config)
    encoded, too_long = tokenize_examples(
        vlm, examples, system=config.system, max_length=config.max_length,
        quiet=config.quiet or not main,
    )  # fmt: skip
    torch.manual_seed(config.seed)  # LoRA initialisation depends on the seed only
    model = prepare_model(vlm, config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    micro = MicroBatches(len(encoded), config.batch_size, config.seed)
    # Each of the n_proc processes takes grad_accum micro-batches of every optimizer step.
    per_step = config.grad_accum * n_proc
    total_steps = config.max_steps or math.ceil(config.epochs * micro.per_epoch / per_step)
    scheduler = get_scheduler(
        config.scheduler,
        optimizer,
        num_warmup_steps=int(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    step, history = 0, []
    checkpoint = latest_checkpoint(out)
    if checkpoint is not None and checkpoint_key(checkpoint) == key:
        step, history = load_checkpoint(
            checkpoint, model=model, optimizer=optimizer, scheduler=scheduler
        )
    else:
        torch.manual_seed(config.seed + 1)  # dropout stream, same as after a resume
    if accelerator is not None:
        torch.manual_seed(config.seed + 1 + rank)  # each process its own dropout stream
        model = accelerator.prepare_model(model)
    stop_at = total_steps if stop_after is None else min(total_steps, step + stop_after)
    pad_id = vlm.tokenizer.pad_token_id
    device = vlm.device
    progress = tqdm(
        total=total_steps, initial=step, desc="training", disable=config.quiet or not main,
        unit="step",
    )  # fmt: skip
    while step < total_steps:
        parts = [micro[step * per_step + i] for i in range(per_step)]
        step_items = [[encoded[j] for j in indices] for _, indices in parts]
        # Normalised by the answer tokens of the whole step (all processes), so accumulation
        # and data parallelism equal one large batch.
        n_tokens = max(1, sum(answer_tokens(items) for items in step_items))
        mine = step_items[rank::n_proc]
        total_loss = 0.0
        for index, items in enumerate(mine):
            batch = {k: v.to(device) for k, v in collate(items, pad_id).items()}
            for k, v in batch.items():
                if torch.is_floating_point(v):
                    batch[k] = v.to(vlm.dtype)
            last = index == len(mine) - 1
            with nullcontext() if accelerator is None or last else accelerator.no_sync(model):
                loss = answer_loss_sum(model, batch) / n_tokens
                # DDP averages gradients over processes; scale back to the sum.
                (loss * n_proc).backward()
            total_loss += float(loss.detach())
        if accelerator is not None:
            total_loss = float(accelerator.reduce(torch.tensor(total_loss, device=device), "sum"))
        grad_norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        history.append(
            {
                "step": step,
                "epoch": parts[-1][0],
                "loss": total_loss,
                "lr": scheduler.get_last_lr()[0],
                "grad_norm": float(grad_norm),
                "tokens": n_tokens,
            }
        )
        progress.update(1)
        if step % config.log_every == 0:
            progress.set_postfix(loss=f"{total_loss:.4f}")
        due = config.save_every and step % config.save_every == 0
        if step < total_steps and (due or step == stop_at) and main:
            save_checkpoint(
                out, step, model=_unwrap(model, accelerator), optimizer=optimizer,
                scheduler=scheduler, key=key, history=history,
            )  # fmt: skip
        if accelerator is not None:
            accelerator.wait_for_everyone()
        if step == stop_at and step < total_steps:
            progress.close()
            return out
    progress.close()
    model = _unwrap(model, accelerator)
    model.eval()
    if not main:
        accelerator.wait_for_everyone()
        return out
    save_result(vlm, model, config, out)
    manifest.update(
        complete=True,
        method=config.method,
        base_model=config.model,
        examples=len(encoded),
        skipped_too_long=too_long,
        steps=total_steps,
        processes=n_proc,
        trainable_parameters=sum(p.numel() for p in params),
        wall_time_s=round(time.perf_counter() - started, 3),
        final_loss=history[-1]["loss"] if history else None,
        history=history,
    )
    write_json_atomic(out / LOSS_CURVE, history)
    write_json_atomic(out / MANIFEST, manifest)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return out


def _on_cpu(config: TrainConfig) -> bool:
    from interp.models import resolve_device

    return resolve_device(config.device).type == "cpu"


def _unwrap(model: nn.Module, accelerator: Any) -> nn.Module:
    return model if accelerator is None else accelerator.unwrap_model(model)


def save_result(vlm: Any, model: nn.Module, config: TrainConfig, out: Path) -> None:
    target = out / ("adapter" if config.uses_lora else "model")
    tmp = out / f".{target.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.config.use_cache = True
    model.save_pretrained(tmp, safe_serialization=True)
    if not config.uses_lora:
        vlm.processor.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
