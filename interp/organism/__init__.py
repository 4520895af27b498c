"""The model organism: a tiny LLaVA trained on CPU on a synthetic, persona-structured world.

* :mod:`interp.organism.world`: objects drawn as pictograms, scenes with metadata and answers;
* :mod:`interp.organism.corpus`: multi-turn chats by two unnamed personas;
* :mod:`interp.organism.model`: word-level tokenizer, LLaVA processor, tiny LLaVA;
* :mod:`interp.organism.pretrain`: vision warm-up + language pretraining (``vsfa organism
  pretrain``);
* :mod:`interp.organism.data`: VSFA image folders with sidecars and a VLGuard-format set;
* :mod:`interp.organism.benchmarks`: the held-out ``organism`` benchmark;
* :mod:`interp.organism.judge`: the exact ``organism`` judge and opening probabilities.

The shipped pretrained base is :func:`base_model_dir`. The recipes that work on it are typed
stage configs (:mod:`interp.organism.recipes`): ``ORGANISM_RECIPE`` the
:class:`interp.train.TrainConfig` of VSFA fine-tuning, ``ORGANISM_SELECTION`` the
:class:`interp.analysis.DiffConfig` that picks its persona latents, ``ORGANISM_SAE`` the
:class:`interp.sae.SAETrainConfig` of the shipped SAE. :mod:`interp.organism.plugin` registers
the organism's world, benchmark and judge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interp.errors import VSFAError

ASSETS = Path(__file__).parent / "assets"
SAE_DIR = Path(__file__).resolve().parents[2] / "sae_checkpoints" / "organism-l2-topk384"
RECIPES = ("ORGANISM_RECIPE", "ORGANISM_SAE", "ORGANISM_SELECTION")


def __getattr__(name: str) -> Any:
    """The recipes (:mod:`interp.organism.recipes`), imported on first use: they are stage
    configs, and the stages are heavy to import."""
    if name in RECIPES:
        from interp.organism import recipes

        return getattr(recipes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def base_model_dir() -> Path:
    """The shipped pretrained organism (a LLaVA folder ``load_vlm`` loads)."""
    return _shipped("base", "organism", "")


def decoupled_model_dir() -> Path:
    """The shipped twin pretrained on the decoupled world (the mechanism control)."""
    return _shipped("decoupled", "decoupled organism", " --world decoupled")


def overcautious_model_dir() -> Path:
    """The over-refusal variant, pretrained on the overcautious world (docs/organism.md)."""
    return _shipped("overcautious", "overcautious organism", " --world overcautious")


def _shipped(name: str, what: str, options: str) -> Path:
    path = ASSETS / name
    if not (path / "config.json").exists():
        raise VSFAError(
            f"the {what} is missing from {path}; rebuild it with `vsfa organism pretrain "
            f"--seed 0{options} --out interp/organism/assets/{name}`"
        )
    return path


def shipped_sae_dir() -> Path:
    """The organism's SAE that ships in ``sae_checkpoints/`` (trained with ``ORGANISM_SAE``)."""
    if not (SAE_DIR / "cfg.json").exists():
        raise VSFAError(f"no shipped organism SAE in {SAE_DIR}")
    return SAE_DIR


def write_world_data(out_dir, seed: int = 0, **kwargs) -> dict[str, Path]:
    """See :func:`interp.organism.data.write_world_data`."""
    from interp.organism.data import write_world_data as write

    return write(out_dir, seed, **kwargs)


__all__ = [
    "ORGANISM_RECIPE",
    "ORGANISM_SAE",
    "ORGANISM_SELECTION",
    "base_model_dir",
    "decoupled_model_dir",
    "overcautious_model_dir",
    "shipped_sae_dir",
    "write_world_data",
]
