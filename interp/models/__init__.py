"""Load any supported VLM the same way: ``load_vlm(name_or_path) -> VLM``.

The family registry is imported at once (it needs neither ``torch`` nor ``transformers``); the
loader and :class:`VLM` are imported the first time they are used, so listing families is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp.lazy import lazy_getattr
from interp.models.families import (
    FAMILIES,
    FamilyAdapter,
    detect_family,
    get_family,
    supported_families,
)

if TYPE_CHECKING:
    from interp.models.loading import load_vlm, resolve_device, resolve_dtype, resolve_run_dir
    from interp.models.vlm import VLM

_LAZY = {
    "VLM": "interp.models.vlm",
    "load_vlm": "interp.models.loading",
    "resolve_device": "interp.models.loading",
    "resolve_dtype": "interp.models.loading",
    "resolve_run_dir": "interp.models.loading",
}

__all__ = [
    "FAMILIES",
    "FamilyAdapter",
    "VLM",
    "detect_family",
    "get_family",
    "load_vlm",
    "resolve_device",
    "resolve_dtype",
    "resolve_run_dir",
    "supported_families",
]

__getattr__ = lazy_getattr(__name__, _LAZY)
