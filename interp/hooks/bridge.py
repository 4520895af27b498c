"""The same hook points through TransformerLens's ``TransformerBridge``.

The bridge gives the full TransformerLens hook vocabulary (attention patterns, MLP outputs ...)
for families it supports. Booting it wraps the model's modules in place, so boot it on a model
you are done generating with, or on a separate load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from interp.errors import UnsupportedFamilyError
from interp.hooks.points import hook_point
from interp.models.vlm import VLM


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
        return TransformerBridge.boot_transformers(
            vlm.name_or_path, hf_model=model, tokenizer=vlm.tokenizer, device=vlm.device
        )
    except ImportError as error:
        # TransformerLens's Qwen-VL adapters import torchvision; native hooks do not need it.
        raise UnsupportedFamilyError(
            f"TransformerBridge cannot wrap this {vlm.family.name} model here: {error}. The "
            "native hooks in interp.hooks give the same hook names without it."
        ) from None


@torch.no_grad()
def bridge_run_with_cache(
    bridge: Any, vlm: VLM, inputs: Mapping[str, torch.Tensor], hook_names: list[str]
) -> dict[str, torch.Tensor]:
    """Residual activations at ``hook_names`` computed by the bridge's own ``run_with_cache``."""
    canonical = {name: hook_point(vlm, name).name for name in hook_names}
    extra = {key: value for key, value in inputs.items() if key != "input_ids"}
    _, cache = bridge.run_with_cache(
        inputs["input_ids"], names_filter=list(canonical.values()), **extra
    )
    return {name: cache[tl_name] for name, tl_name in canonical.items()}
