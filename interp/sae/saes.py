"""SAEs in sae_lens's format: build a training SAE, save it, load a saved one, check it fits.

A saved SAE is a folder with ``cfg.json`` and ``sae_weights.safetensors``, written by sae_lens's
``save_inference_model``, so ``sae_lens.SAE.load_from_disk(folder)`` loads it as well.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from sae_lens import SAE
from sae_lens.registry import get_sae_training_class
from sae_lens.saes.sae import SAEMetadata, TrainingSAE

from interp.cache.store import ActivationStore
from interp.errors import VSFAError
from interp.models.loading import resolve_device
from interp.sae.config import SAETrainConfig


def build_sae(
    config: SAETrainConfig, d_in: int, device: torch.device, metadata: dict[str, Any]
) -> TrainingSAE:
    """A fresh sae_lens training SAE of ``config.arch`` (seeded)."""
    sae_class, cfg_class = get_sae_training_class(config.arch)
    kwargs: dict[str, Any] = dict(d_in=d_in, d_sae=config.width, device=str(device))
    if config.arch in ("topk", "batchtopk"):
        kwargs["k"] = config.k
    elif config.arch == "standard":
        kwargs.update(
            l1_coefficient=config.l1_coefficient,
            l1_warm_up_steps=config.coefficient_warm_up_steps,
        )
    elif config.arch == "jumprelu":
        kwargs.update(
            l0_coefficient=config.l0_coefficient,
            l0_warm_up_steps=config.coefficient_warm_up_steps,
        )
    kwargs.update(config.extra)
    kwargs["metadata"] = SAEMetadata(**metadata)
    torch.manual_seed(config.seed)
    return sae_class(cfg_class(**kwargs))


def save_sae(sae: TrainingSAE, out: Path) -> None:
    """``save_inference_model`` into a temporary folder, then move its two files into place."""
    tmp = out / ".saving"
    if tmp.exists():
        shutil.rmtree(tmp)
    weights, cfg = sae.save_inference_model(tmp)
    os.replace(weights, out / weights.name)
    os.replace(cfg, out / cfg.name)
    shutil.rmtree(tmp)


def load_sae(path: str | os.PathLike, device: str = "cpu") -> SAE:
    """Load a saved SAE (sae_lens format) with a clear error for a wrong folder."""
    path = Path(path)
    if not (path / "cfg.json").exists() or not (path / "sae_weights.safetensors").exists():
        raise VSFAError(
            f"{path} is not a saved SAE: expected cfg.json and sae_weights.safetensors "
            "(written by `vsfa sae train`)"
        )
    try:
        return SAE.load_from_disk(str(path), device=str(resolve_device(device)))
    except VSFAError:
        raise
    except Exception as error:  # sae_lens raises assorted errors for malformed folders
        raise VSFAError(f"{path} cannot be loaded as an SAE: {error}") from None


def check_sae_matches(sae: SAE, store: ActivationStore, hook_name: str | None = None) -> None:
    """Raise when an SAE cannot read a folder's activations (width or hook mismatch)."""
    if sae.cfg.d_in != store.d_model:
        raise VSFAError(
            f"SAE d_in is {sae.cfg.d_in} but the activations in {store.path} have d_model "
            f"{store.d_model}; the SAE was trained on another model or layer"
        )
    hook = hook_name or sae.cfg.metadata.hook_name
    if hook:
        store.check_hook(hook)
