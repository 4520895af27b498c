"""The supported VLM families, one module each; importing this package registers them all.

Each ``interp/models/families/<name>.py`` holds one family's adapter (a subclass of
:class:`FamilyAdapter`), its chat template and its tiny randomly initialised builder. Nothing
here imports ``torch`` or ``transformers``: listing and detecting families stays cheap.
"""

from interp.models.families.base import (
    FAMILIES,
    FamilyAdapter,
    FamilyRegistry,
    detect_family,
    family,
    get_family,
    supported_families,
)

# isort: off
# Importing a family's module registers it, in the order ``vsfa families`` lists them.
from interp.models.families import llava, qwen2_5_vl, qwen3_vl  # noqa: E402, F401
from interp.models.families import gemma3, idefics3, mllama  # noqa: E402, F401

# isort: on

__all__ = [
    "FAMILIES",
    "FamilyAdapter",
    "FamilyRegistry",
    "detect_family",
    "family",
    "get_family",
    "supported_families",
]
