"""Native PyTorch forward hooks on the decoder layers, under TransformerLens names.

This path works for every family (TransformerBridge does not cover Mllama) and costs about one
percent of generation throughput, so caching and steering use it; :mod:`interp.hooks.bridge`
gives the same tensors through TransformerLens for cross-checks and TL-native analysis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress

import torch
from torch import nn

from interp.hooks.points import HookPoint, hook_point
from interp.models.vlm import VLM

HookFn = Callable[[torch.Tensor], "torch.Tensor | None"]
"""Receives the residual ``[batch, seq, d_model]``; a returned tensor replaces it."""


def _replace_hidden(output, new_hidden: torch.Tensor):
    if isinstance(output, torch.Tensor):
        return new_hidden
    return (new_hidden, *output[1:])


def _post_hook(fn: HookFn):
    def hook(module: nn.Module, args, output):
        hidden = output if isinstance(output, torch.Tensor) else output[0]
        replaced = fn(hidden)
        return None if replaced is None else _replace_hidden(output, replaced)

    return hook


def _pre_hook(fn: HookFn):
    def hook(module: nn.Module, args, kwargs):
        if args:
            replaced = fn(args[0])
            return None if replaced is None else ((replaced, *args[1:]), kwargs)
        replaced = fn(kwargs["hidden_states"])
        return None if replaced is None else (args, {**kwargs, "hidden_states": replaced})

    return hook


def _register(module: nn.Module, point: HookPoint, fn: HookFn):
    if point.point == "resid_post":
        return module.register_forward_hook(_post_hook(fn))
    return module.register_forward_pre_hook(_pre_hook(fn), with_kwargs=True)


@contextmanager
def hooked(vlm: VLM, hooks: Mapping[str, HookFn]) -> Iterator[None]:
    """Install ``{hook_name: fn}`` on the model for the duration of the block.

    Works for plain forwards and for ``generate`` with a KV cache (then each new token arrives
    with ``seq == 1``). Hooks are removed on exit, also when the block raises.
    """
    points = {name: hook_point(vlm, name) for name in hooks}
    layers = vlm.layers
    with ExitStack() as stack:
        for name, fn in hooks.items():
            point = points[name]
            handle = _register(layers[point.layer], point, fn)
            stack.callback(handle.remove)
        yield


class _StopForward(Exception):
    """Raised by the last cache hook so no layer past the deepest requested one runs."""


@torch.no_grad()
def run_with_cache(
    vlm: VLM,
    inputs: Mapping[str, torch.Tensor],
    hook_names: list[str],
    *,
    stop_early: bool = True,
) -> dict[str, torch.Tensor]:
    """One forward that returns the residual stream at ``hook_names`` (``[batch, seq, d]`` each).

    With ``stop_early`` the forward ends right after the deepest requested hook, so caching an
    early layer costs only the layers up to it.
    """
    points = {name: hook_point(vlm, name) for name in hook_names}
    deepest = max(points.values(), key=lambda p: (p.layer, p.point == "resid_post"))
    cache: dict[str, torch.Tensor] = {}

    def recorder(name: str) -> HookFn:
        def record(hidden: torch.Tensor) -> None:
            cache[name] = hidden.detach()
            if stop_early and points[name] == deepest and len(cache) == len(points):
                raise _StopForward

        return record

    with hooked(vlm, {name: recorder(name) for name in hook_names}), suppress(_StopForward):
        vlm.model(**inputs, use_cache=False)
    missing = [name for name in hook_names if name not in cache]
    if missing:
        raise RuntimeError(
            f"the forward pass never reached {missing}; the {vlm.family.name} model skipped "
            "those layers for this input"
        )
    return cache
