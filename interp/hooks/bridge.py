"""The same hook points through TransformerLens's ``TransformerBridge``.

The bridge gives the full TransformerLens hook vocabulary (attention patterns, q/k/v ...) for
families it supports. Booting it wraps the model's modules in place, so boot it on a model you
are done generating with, or on a separate load.

The bridge is handed the loaded model and the VLM's own processor: nothing is loaded again and
nothing is installed. TransformerLens's Qwen-VL adapters declare torchvision as required (for
video processing); the workbench feeds images only, so without torchvision they are booted all
the same, with the image-only processor of :mod:`interp.models.compat`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from unittest import mock

import torch

from interp.errors import UnsupportedFamilyError
from interp.hooks.points import hook_point
from interp.models.vlm import VLM

_VIDEO_ONLY_LIBRARIES = frozenset({"torchvision"})
"""Libraries TransformerLens adapters require that images-only use does not need."""


@contextmanager
def _booting_with(vlm: VLM) -> Iterator[None]:
    """While booting: the VLM's processor instead of a fresh ``AutoProcessor`` load (whose
    failure would make TransformerLens try to pip-install torchvision), and no check for
    libraries only videos need."""
    import transformers
    from transformer_lens.model_bridge.architecture_adapter import ArchitectureAdapter

    check = ArchitectureAdapter._check_required_libraries

    def check_images_only(adapter: Any) -> None:
        required = adapter.required_libraries
        adapter.required_libraries = [n for n in required if n not in _VIDEO_ONLY_LIBRARIES]
        try:
            check(adapter)
        finally:
            adapter.required_libraries = required

    processor = vlm.processor
    with (
        mock.patch.object(ArchitectureAdapter, "_check_required_libraries", check_images_only),
        mock.patch.object(transformers.AutoProcessor, "from_pretrained", lambda *a, **k: processor),
    ):
        yield


def boot_bridge(vlm: VLM) -> Any:
    """Wrap a loaded VLM's model in a ``TransformerBridge`` (modifies the model in place)."""
    if not vlm.family.bridge:
        raise UnsupportedFamilyError(
            f"TransformerBridge does not support the {vlm.family.name} family; use the native "
            "hooks in interp.hooks (same hook names, same tensors)"
        )
    from transformer_lens.model_bridge import TransformerBridge

    model = vlm.model.get_base_model() if hasattr(vlm.model, "get_base_model") else vlm.model
    try:
        with _booting_with(vlm):
            return TransformerBridge.boot_transformers(
                vlm.name_or_path, hf_model=model, tokenizer=vlm.tokenizer, device=vlm.device
            )
    except ImportError as error:
        raise UnsupportedFamilyError(
            f"TransformerBridge cannot wrap this {vlm.family.name} model here: {error}. The "
            "native hooks in interp.hooks give the same hook names without it."
        ) from None


@torch.no_grad()
def bridge_run_with_cache(
    bridge: Any, vlm: VLM, inputs: Mapping[str, torch.Tensor], hook_names: list[str]
) -> dict[str, torch.Tensor]:
    """Activations at ``hook_names`` computed by the bridge's own ``run_with_cache``."""
    canonical = {name: hook_point(vlm, name).name for name in hook_names}
    extra = {key: value for key, value in inputs.items() if key != "input_ids"}
    _, cache = bridge.run_with_cache(
        inputs["input_ids"], names_filter=list(canonical.values()), **extra
    )
    return {name: cache[tl_name] for name, tl_name in canonical.items()}
