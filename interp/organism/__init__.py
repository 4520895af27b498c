"""The model organism: a tiny LLaVA trained on CPU on a synthetic, persona-structured world.

* :mod:`interp.organism.world`: objects drawn as pictograms, scenes with metadata and answers;
* :mod:`interp.organism.corpus`: multi-turn chats by two unnamed personas;
* :mod:`interp.organism.model`: word-level tokenizer, LLaVA processor, tiny LLaVA;
* :mod:`interp.organism.pretrain`: vision warm-up + language pretraining (``vsfa organism
  pretrain``);
* :mod:`interp.organism.data`: VSFA image folders with sidecars and a VLGuard-format set;
* :mod:`interp.organism.benchmarks`: the held-out ``organism`` benchmark;
* :mod:`interp.organism.judge`: the exact ``organism`` judge and opening probabilities.

The shipped pretrained base is :func:`base_model_dir`; ``ORGANISM_RECIPE`` holds the
:class:`interp.train.TrainConfig` fields of the VSFA fine-tuning recipe that works on it and
``ORGANISM_SELECTION`` the :class:`interp.analysis.DiffConfig` fields that pick its persona
latents; ``ORGANISM_SAE`` the :class:`interp.sae.SAETrainConfig` fields of the shipped SAE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interp.errors import VSFAError

ASSETS = Path(__file__).parent / "assets"

# VSFA fine-tuning recipe for the organism (TrainConfig fields; measured in docs/organism.md).
ORGANISM_RECIPE: dict[str, Any] = {
    "method": "lora",
    "lora_r": 16,
    "lora_alpha": 32,
    "lr": 1e-3,
    "max_steps": 60,
    "batch_size": 16,
    "grad_accum": 1,
    "warmup_ratio": 0.05,
    "scheduler": "linear",
    "device": "cpu",
    "dtype": "float32",
    "save_every": 0,
}

# Latent selection for the organism (DiffConfig fields; measured in docs/steering.md). Its VSFA
# shift is spread over a few latents of a 384-wide SAE and shows on benign prompts too (the
# persona is a context feature), so the top three by harmful-prompt increase are steered
# together and a rise on benign prompts is not penalised.
ORGANISM_SELECTION: dict[str, Any] = {"n_select": 3, "benign_penalty": 0.0}

# SAE recipe of the shipped sae_checkpoints/organism-l2-topk384 (SAETrainConfig fields), trained
# on base and VSFA activations of the benchmark prompts and of the world's corpus sample: the
# corpus sample carries both personas, so the SAE sees the persona outside the benchmark too.
ORGANISM_SAE: dict[str, Any] = {
    "arch": "topk",
    "width": 384,
    "k": 16,
    "steps": 600,
    "batch_size": 512,
    "seed": 0,
}


def base_model_dir() -> Path:
    """The shipped pretrained organism (a LLaVA folder ``load_vlm`` loads)."""
    path = ASSETS / "base"
    if not (path / "config.json").exists():
        raise VSFAError(
            f"the shipped organism is missing from {path}; rebuild it with "
            "`vsfa organism pretrain --seed 0 --out interp/organism/assets/base`"
        )
    return path


def decoupled_model_dir() -> Path:
    """The shipped twin pretrained on the decoupled world (the mechanism control)."""
    path = ASSETS / "decoupled"
    if not (path / "config.json").exists():
        raise VSFAError(
            f"the decoupled organism is missing from {path}; rebuild it with `vsfa organism "
            "pretrain --seed 0 --world decoupled --out interp/organism/assets/decoupled`"
        )
    return path


def write_world_data(out_dir, seed: int = 0, **kwargs) -> dict[str, Path]:
    """See :func:`interp.organism.data.write_world_data`."""
    from interp.organism.data import write_world_data as write

    return write(out_dir, seed, **kwargs)


__all__ = [
    "ORGANISM_RECIPE",
    "ORGANISM_SELECTION",
    "base_model_dir",
    "decoupled_model_dir",
    "write_world_data",
]
