"""The organism as a plug-in: importing this module registers its world, benchmark and judge.

Declared under the ``interp.plugins`` entry point in ``pyproject.toml``; the registries of
:mod:`interp.registry` import it the first time they are asked for a name they do not hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import interp.organism.benchmarks  # noqa: F401  (registers the ``organism`` benchmark)
import interp.organism.judge  # noqa: F401  (registers the ``organism`` judge)
import interp.organism.persona  # noqa: F401  (registers the organism's persona context sources)
from interp import organism
from interp.pipeline.worlds import WORLDS


class OrganismWorld:
    """The shipped organism, its synthetic world and the recipes measured on it."""

    name = "organism"
    title = "the model organism"
    benchmark = "organism"
    judge = "organism"

    def base_model_dir(self) -> Path:
        return organism.base_model_dir()

    def write_data(self, out: Path, seed: int) -> dict[str, Path]:
        return organism.write_world_data(out, seed=seed)

    def train_recipe(self) -> Any:
        return organism.ORGANISM_RECIPE

    def sae_recipe(self) -> Any:
        return organism.ORGANISM_SAE

    def selection(self) -> Any:
        return organism.ORGANISM_SELECTION

    def shipped_sae(self) -> Path:
        return organism.shipped_sae_dir()


WORLDS.add("organism", OrganismWorld())
