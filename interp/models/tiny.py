"""Tiny, randomly initialised models of every supported family, built offline from configs.

Tests, benchmarks and the model organism use these to run the real code paths (real
``transformers`` classes, real processors, real chat templates) without downloading weights.
:func:`build_tiny_vlm` writes a folder with ``save_pretrained`` that
:func:`interp.models.load_vlm` loads like any checkpoint; each family's builder lives beside its
adapter in ``interp/models/families/<name>.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

from interp.models.families import FAMILIES, get_family
from interp.models.families.tiny_parts import TINY_TEXT, TINY_VISION, byte_level_tokenizer

__all__ = [
    "TINY_TEXT",
    "TINY_VISION",
    "build_tiny_vlm",
    "byte_level_tokenizer",
    "tiny_families",
    "tiny_image",
]


def tiny_families() -> list[str]:
    """Names of the families that have a tiny builder, sorted."""
    return [name for name, adapter in FAMILIES.items() if adapter.tiny_tokens is not None]


def build_tiny_vlm(family: str, out: str | os.PathLike, seed: int = 0) -> Path:
    """Write a tiny random model of ``family`` to ``out`` (a ``save_pretrained`` folder)."""
    return get_family(family).build_tiny(Path(out), seed)


def tiny_image(seed: int = 0, size: int = 32):
    """A small deterministic RGB test image."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), "RGB")
