"""Load any supported VLM the same way: ``load_vlm(name_or_path) -> VLM``."""

from interp.models.families import (
    FAMILIES,
    FamilyAdapter,
    detect_family,
    get_family,
    supported_families,
)
from interp.models.loading import load_vlm, resolve_device, resolve_dtype, resolve_run_dir
from interp.models.vlm import VLM

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
