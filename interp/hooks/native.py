"""Native PyTorch forward hooks on the decoder layers, under TransformerLens names.

This path works for every family (TransformerBridge does not cover Mllama) and costs about one
percent of generation throughput, so caching and steering use it; :mod:`interp.hooks.bridge`
gives the same tensors through TransformerLens for cross-checks and TL-native analysis.

Where each point sits (the family adapter names the submodules, see
:attr:`~interp.models.families.base.FamilyAdapter.block_modules`):

* ``resid_pre`` / ``resid_post``: the decoder layer's input / output;
* ``attn_out`` / ``mlp_out``: the output of the module the layer adds to its residual stream; in a
  layer that scales or masks that output (Mllama's gated cross-attention layers) the difference
  of the residual streams around it, which can be read but not replaced;
* ``resid_mid``: the input of the pre-MLP norm. The layer keeps that very tensor as its residual,
  so a replacement is written into it and reaches both the MLP and the residual sum;
* ``ln1_normalized`` / ``ln2_normalized``: the norm's input divided by its RMS (read only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from typing import Any

import torch
from torch import nn

from interp.errors import HookNameError
from interp.hooks.points import HookPoint, hook_point
from interp.models.vlm import VLM

HookFn = Callable[[torch.Tensor], "torch.Tensor | None"]
"""Receives the activation ``[batch, seq, d_model]``; a returned tensor replaces it."""


def _replace_output(output: Any, new: torch.Tensor) -> Any:
    return new if isinstance(output, torch.Tensor) else (new, *output[1:])


def _output(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output[0]


def _input(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _post_hook(fn: HookFn):
    def hook(module: nn.Module, args, output):
        replaced = fn(_output(output))
        return None if replaced is None else _replace_output(output, replaced)

    return hook


def _pre_hook(fn: HookFn):
    def hook(module: nn.Module, args, kwargs):
        replaced = fn(_input(args, kwargs))
        if replaced is None:
            return None
        if args:
            return (replaced, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": replaced}

    return hook


def _read_only(name: str, fn: HookFn) -> HookFn:
    def read(value: torch.Tensor) -> None:
        if fn(value) is not None:
            raise HookNameError(f"{name} can be read but not replaced on this model")

    return read


def _rms_normalized(norm: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """``hidden`` divided by its RMS as the norm computes it (float32; centred for LayerNorm)."""
    x = hidden.float()
    if isinstance(norm, nn.LayerNorm):
        x = x - x.mean(-1, keepdim=True)
    eps = getattr(norm, "variance_epsilon", None) or getattr(norm, "eps", 1e-6)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _mid_hook(fn: HookFn):
    def hook(module: nn.Module, args, kwargs):
        hidden = _input(args, kwargs)
        replaced = fn(hidden)
        if replaced is not None:
            hidden.copy_(replaced)  # the layer's residual is this tensor too

    return hook


def _register(vlm: VLM, point: HookPoint, fn: HookFn) -> list[Any]:
    """Install ``fn`` at ``point``; the handles to remove."""
    layer = vlm.layers[point.layer]
    family = vlm.family
    if point.point == "resid_pre":
        return [layer.register_forward_pre_hook(_pre_hook(fn), with_kwargs=True)]
    if point.point == "resid_post":
        return [layer.register_forward_hook(_post_hook(fn))]
    if point.point in ("ln1_normalized", "ln2_normalized"):
        norm = family.block_module(layer, point.point[:3])
        read = _read_only(point.name, fn)
        return [
            norm.register_forward_pre_hook(
                lambda m, args, kwargs: read(_rms_normalized(m, _input(args, kwargs))),
                with_kwargs=True,
            )
        ]
    ln2 = family.block_module(layer, "ln2")
    if point.point == "resid_mid":
        return [ln2.register_forward_pre_hook(_mid_hook(fn), with_kwargs=True)]
    module = family.block_module(layer, point.point)
    if module is not None:
        return [module.register_forward_hook(_post_hook(fn))]
    return _register_difference(layer, ln2, point, _read_only(point.name, fn))


def _register_difference(
    layer: nn.Module, ln2: nn.Module, point: HookPoint, fn: HookFn
) -> list[Any]:
    """``attn_out`` = resid_mid - resid_pre, ``mlp_out`` = resid_post - resid_mid."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    if point.point == "attn_out":

        def keep_pre(module, args, kwargs):
            seen["pre"] = _input(args, kwargs).detach().clone()

        def at_mid(module, args, kwargs):
            fn(_input(args, kwargs) - seen.pop("pre"))

        handles.append(layer.register_forward_pre_hook(keep_pre, with_kwargs=True))
        handles.append(ln2.register_forward_pre_hook(at_mid, with_kwargs=True))
    else:

        def keep_mid(module, args, kwargs):
            seen["mid"] = _input(args, kwargs).detach().clone()

        def at_post(module, args, output):
            fn(_output(output) - seen.pop("mid"))

        handles.append(ln2.register_forward_pre_hook(keep_mid, with_kwargs=True))
        handles.append(layer.register_forward_hook(at_post))
    return handles


@contextmanager
def hooked(vlm: VLM, hooks: Mapping[str, HookFn]) -> Iterator[None]:
    """Install ``{hook_name: fn}`` on the model for the duration of the block.

    Works for plain forwards and for ``generate`` with a KV cache (then each new token arrives
    with ``seq == 1``). Hooks are removed on exit, also when the block raises.
    """
    points = {name: hook_point(vlm, name) for name in hooks}
    with ExitStack() as stack:
        for name, fn in hooks.items():
            for handle in _register(vlm, points[name], fn):
                stack.callback(handle.remove)
        yield


class _StopForward(Exception):
    """Raised once every requested activation is recorded, so no later layer runs."""


@torch.no_grad()
def run_with_cache(
    vlm: VLM,
    inputs: Mapping[str, torch.Tensor],
    hook_names: list[str],
    *,
    stop_early: bool = True,
) -> dict[str, torch.Tensor]:
    """One forward that returns the activations at ``hook_names`` (``[batch, seq, d]`` each).

    With ``stop_early`` the forward ends right after the deepest requested hook, so caching an
    early layer costs only the layers up to it. The activations come back on the device of the
    inputs (:attr:`VLM.device`), whichever device a device map ran their layer on.
    """
    for name in hook_names:
        hook_point(vlm, name)  # a bad name is an error before the forward
    cache: dict[str, torch.Tensor] = {}
    wanted = set(hook_names)
    device = vlm.device

    def recorder(name: str) -> HookFn:
        def record(value: torch.Tensor) -> None:
            cache[name] = value.detach().to(device)
            if stop_early and len(cache) == len(wanted):
                raise _StopForward

        return record

    with hooked(vlm, {name: recorder(name) for name in wanted}), suppress(_StopForward):
        vlm.model(**inputs, use_cache=False)
    missing = [name for name in hook_names if name not in cache]
    if missing:
        raise RuntimeError(
            f"the forward pass never reached {missing}; the {vlm.family.name} model skipped "
            "those layers for this input"
        )
    return {name: cache[name] for name in hook_names}
