"""TransformerLens hook names for the language model's decoder blocks.

Every family has the TransformerLens block hooks, each ``[batch, seq, d_model]``:

* ``blocks.{L}.hook_resid_pre``: the residual stream entering decoder layer ``L``;
* ``blocks.{L}.hook_attn_out``: what the attention sublayer adds to it (after a post-attention
  norm where the family has one, as TransformerLens places it);
* ``blocks.{L}.hook_resid_mid``: the residual stream between attention and MLP;
* ``blocks.{L}.hook_mlp_out``: what the MLP sublayer adds;
* ``blocks.{L}.hook_resid_post``: the residual stream leaving the layer;
* ``blocks.{L}.ln1.hook_normalized`` / ``ln2.hook_normalized``: the input of the pre-attention /
  pre-MLP norm divided by its RMS (before the norm's weight).

Qwen3-VL adds its deepstack image features to the residual stream between decoder layers, so
there ``blocks.{L+1}.hook_resid_pre`` differs from ``blocks.{L}.hook_resid_post`` at image
positions of the first layers.

TransformerBridge's own names are accepted as aliases (``hook_in``, ``hook_out``,
``attn.hook_out``, ``mlp.hook_out``, ``ln2.hook_in``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from interp.errors import HookNameError

if TYPE_CHECKING:
    from interp.models.vlm import VLM

POINTS = (
    "resid_pre",
    "ln1_normalized",
    "attn_out",
    "resid_mid",
    "ln2_normalized",
    "mlp_out",
    "resid_post",
)
"""The hook points of one block, in the order the forward reaches them."""
_SUFFIX = {
    "resid_pre": "hook_resid_pre",
    "ln1_normalized": "ln1.hook_normalized",
    "attn_out": "hook_attn_out",
    "resid_mid": "hook_resid_mid",
    "ln2_normalized": "ln2.hook_normalized",
    "mlp_out": "hook_mlp_out",
    "resid_post": "hook_resid_post",
}
_ALIASES = {
    "hook_in": "resid_pre",
    "hook_out": "resid_post",
    "attn.hook_out": "attn_out",
    "mlp.hook_out": "mlp_out",
    "ln2.hook_in": "resid_mid",
    **{suffix: point for point, suffix in _SUFFIX.items()},
}
_HOOK_PATTERN = re.compile(r"^blocks\.(\d+)\.(" + "|".join(map(re.escape, _ALIASES)) + r")$")


@dataclass(frozen=True)
class HookPoint:
    """A parsed hook name: decoder layer index and the point inside the block (:data:`POINTS`)."""

    layer: int
    point: str

    @property
    def name(self) -> str:
        """The TransformerLens name (``blocks.1.hook_mlp_out``)."""
        return f"blocks.{self.layer}.{_SUFFIX[self.point]}"


def hook_names_help(n_layers: int) -> str:
    """The accepted hook names of a model with ``n_layers`` decoder layers, for error messages."""
    suffixes = ", ".join(_SUFFIX.values())
    return f"blocks.L.<{suffixes}> with L in 0..{n_layers - 1}"


def parse_hook_name(name: str, n_layers: int) -> HookPoint:
    """Parse and range-check a hook name against a model with ``n_layers`` decoder layers."""
    match = _HOOK_PATTERN.match(name.strip()) if isinstance(name, str) else None
    if match is None:
        raise HookNameError(f"unknown hook name {name!r}; expected {hook_names_help(n_layers)}")
    layer = int(match.group(1))
    if layer >= n_layers:
        raise HookNameError(
            f"hook {name!r} names layer {layer}, but the model has {n_layers} decoder layers "
            f"(valid: blocks.0.hook_resid_post ... blocks.{n_layers - 1}.hook_resid_post)"
        )
    return HookPoint(layer=layer, point=_ALIASES[match.group(2)])


def hook_point(vlm: VLM, name: str) -> HookPoint:
    return parse_hook_name(name, vlm.n_layers)


def resid_hook_names(vlm: VLM) -> list[str]:
    """All residual-stream-after-layer hook names of a model, shallow to deep."""
    return [f"blocks.{layer}.hook_resid_post" for layer in range(vlm.n_layers)]


def block_hook_names(vlm: VLM, layer: int) -> list[str]:
    """Every hook name of decoder layer ``layer``, in forward order."""
    return [HookPoint(vlm.check_layer(layer), point).name for point in POINTS]
