"""The cache stage: prompt sets through a VLM, residual activations on disk, and reading them.

* :mod:`interp.cache.prompts`: :class:`CachePrompt` and :func:`load_prompts` (VQA ``.jsonl``,
  text file, benchmark spec);
* :mod:`interp.cache.config`: :class:`CacheConfig`, what ``vsfa cache`` caches;
* :mod:`interp.cache.run`: :func:`cache_activations` / :func:`cache_activations_for`;
* :mod:`interp.cache.store`: the folder's layout, :class:`ActivationStore`,
  :func:`write_activations`;
* :mod:`interp.cache.ranks`: the layout of a folder written by several processes (``torchrun``);
* :mod:`interp.cache.stream`: :class:`ActivationStream`, shuffled batches for SAE training.

The config and prompt modules are imported here; the rest (they import torch) on first use.
"""

from interp.cache.config import POSITIONS, CacheConfig
from interp.cache.prompts import CachePrompt, load_prompts
from interp.lazy import lazy_getattr

_LAZY = {
    "cache_activations": "interp.cache.run",
    "cache_activations_for": "interp.cache.run",
    "ActivationStore": "interp.cache.store",
    "write_activations": "interp.cache.store",
    "PART_IMAGE": "interp.cache.store",
    "PART_TEXT": "interp.cache.store",
    "PART_RESPONSE": "interp.cache.store",
    "PART_IMAGE_MARKER": "interp.cache.store",
    "TOKEN_COLUMNS": "interp.cache.store",
    "ActivationStream": "interp.cache.stream",
}

__all__ = ["POSITIONS", "CacheConfig", "CachePrompt", "load_prompts", *_LAZY]

__getattr__ = lazy_getattr(__name__, _LAZY)
