"""Worlds: a base model that comes with its own data, benchmark, judge and recipes.

A world is a plug-in. Its package declares an ``interp.plugins`` entry point whose module adds
it to :data:`WORLDS`, so no runner names a world. The runners use it this way:

* ``vsfa demo`` runs the whole story on a world (``--world``, default: the one registered);
* in a ``vsfa run`` experiment, ``model: <world>`` is its base model, ``<world>:<key>`` one of
  its data folders (a key of :meth:`World.write_data`), ``train: <world>`` its fine-tuning
  recipe, ``vlguard: {data: <world>}`` its VLGuard-format set, and a dataset's
  ``source: model:<world>`` answers with its base model.

Recipes are typed stage configs whose run-specific paths hold :data:`PER_RUN`; a runner fills
them with :func:`dataclasses.replace`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from interp.errors import VSFAError
from interp.registry import Registry

if TYPE_CHECKING:
    from interp.analysis import DiffConfig
    from interp.sae import SAETrainConfig
    from interp.train.config import TrainConfig

PER_RUN = "<set per run>"
"""The model, data and output paths of a recipe, which each run replaces with its own."""

# The data keys a runner reads from every world (a world may write more).
DATA_KEYS = ("threat_images", "benign_images", "vlguard_train", "vlguard_images")


class World(Protocol):
    """What a runner needs from a world."""

    name: str
    """registry name; labels the rows of the tables made on it"""
    title: str
    """what the world is, in words (report titles)"""
    benchmark: str
    """the registered benchmark its models are evaluated on"""
    judge: str
    """the registered judge that scores its models' replies"""

    def base_model_dir(self) -> Path:
        """The pretrained base model (a folder ``load_vlm`` loads)."""
        ...

    def write_data(self, out: Path, seed: int) -> dict[str, Path]:
        """Write the world's data under ``out``: folders and files by key, at least
        :data:`DATA_KEYS` and ``corpus_sample`` (prompts an SAE is trained on beside the
        benchmark's)."""
        ...

    def train_recipe(self) -> TrainConfig:
        """The VSFA fine-tuning recipe that works on the base (paths :data:`PER_RUN`)."""
        ...

    def sae_recipe(self) -> SAETrainConfig:
        """How its SAE is trained (paths :data:`PER_RUN`; no ``hook_name``: the middle layer)."""
        ...

    def selection(self) -> DiffConfig:
        """The latent selection of the model diff that picks its persona latents."""
        ...

    def shipped_sae(self) -> Path:
        """The SAE that ships for the base (trained with :meth:`sae_recipe`)."""
        ...


WORLDS: Registry[World] = Registry("world")


def get_world(name: str | None = None) -> World:
    """The world ``name``, or with ``None`` the one world registered."""
    if name is not None:
        return WORLDS.get(name)
    names = WORLDS.names()
    if len(names) != 1:
        listed = ", ".join(names) or "none is registered"
        raise VSFAError(f"--world: name the world to run on ({listed})")
    return WORLDS.get(names[0])


def world_reference(value: str | None) -> tuple[World, str | None] | None:
    """``(world, None)`` for ``<world>``, ``(world, key)`` for ``<world>:<key>``, else None."""
    if not value:
        return None
    name, colon, key = value.partition(":")
    if not name or "/" in name or name not in WORLDS:
        return None
    return WORLDS.get(name), (key if colon else None)
