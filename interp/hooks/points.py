"""TransformerLens-style hook names for the language model's residual stream.

``blocks.{L}.hook_resid_post`` is the residual stream after decoder layer ``L`` and
``blocks.{L}.hook_resid_pre`` the residual stream entering it, each ``[batch, seq, d_model]``,
exactly as TransformerLens names them. ``blocks.{L}.hook_out`` / ``hook_in`` (TransformerBridge's
own names) are accepted as aliases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from interp.errors import HookNameError

if TYPE_CHECKING:
    from interp.models.vlm import VLM

_HOOK_PATTERN = re.compile(r"^blocks\.(\d+)\.(hook_resid_post|hook_resid_pre|hook_out|hook_in)$")
_CANONICAL = {
    "hook_resid_post": "resid_post",
    "hook_out": "resid_post",
    "hook_resid_pre": "resid_pre",
    "hook_in": "resid_pre",
}


@dataclass(frozen=True)
class HookPoint:
    """A parsed hook name: decoder layer index and whether it is before or after the layer."""

    layer: int
    point: str  # "resid_post" or "resid_pre"

    @property
    def name(self) -> str:
        return f"blocks.{self.layer}.hook_{self.point}"


def parse_hook_name(name: str, n_layers: int) -> HookPoint:
    """Parse and range-check a hook name against a model with ``n_layers`` decoder layers."""
    match = _HOOK_PATTERN.match(name.strip()) if isinstance(name, str) else None
    if match is None:
        raise HookNameError(
            f"unknown hook name {name!r}; expected blocks.L.hook_resid_post or "
            f"blocks.L.hook_resid_pre with L in 0..{n_layers - 1}"
        )
    layer = int(match.group(1))
    if layer >= n_layers:
        raise HookNameError(
            f"hook {name!r} names layer {layer}, but the model has {n_layers} decoder layers "
            f"(valid: blocks.0.hook_resid_post ... blocks.{n_layers - 1}.hook_resid_post)"
        )
    return HookPoint(layer=layer, point=_CANONICAL[match.group(2)])


def hook_point(vlm: VLM, name: str) -> HookPoint:
    return parse_hook_name(name, vlm.n_layers)


def resid_hook_names(vlm: VLM) -> list[str]:
    """All residual-stream-after-layer hook names of a model, shallow to deep."""
    return [f"blocks.{layer}.hook_resid_post" for layer in range(vlm.n_layers)]
