"""Steering interventions on the residual stream during ``generate`` (KV cache on or off).

Each context manager installs one native PyTorch forward hook on a decoder layer (through
:func:`interp.hooks.native.hooked`, about one percent of throughput) and removes it on exit, also
when the block raises. They compose: nest them, or hand their factories to the eval harness's
``hooks`` list (``functools.partial(add_direction, vlm, hook, d, 4.0)``).

Positions:

* ``all``: every position of every forward.
* ``prompt``: only the positions of the prompt (the prefill pass; with the KV cache off, the
  first ``prompt_len`` positions of every pass).
* ``generated``: only the positions of generated tokens (later passes). The first generated
  token is predicted from the last prompt position, so it is not steered in this mode.

The prompt/generated split is found by a pre-hook on the outer model that reads the KV cache's
length and remembers the prompt of the current ``generate`` call; left padding is part of the
prompt, so a batch shares one split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn

from interp.errors import VSFAError
from interp.hooks.native import hooked
from interp.hooks.points import hook_point
from interp.models.vlm import VLM
from interp.sae.latents import (
    DeviceCopies,
    Latents,
    check_latents,
    latent_activation,
    latent_direction,
    output_scale,
    plain_relu_activation,
    sae_hook_name,
)
from interp.steer.config import Positions, check_positions

Edit = Callable[[torch.Tensor], torch.Tensor]
"""Receives residual positions ``[batch, seq, d_model]`` and returns their replacement."""


# ---- which positions of a forward are prompt, which generated ------------------------------
_CACHE_KWARGS = ("cache", "past_key_values")


class _PositionTracker:
    """Knows, for the current forward, the absolute offset of its first position and the prompt
    length of the ``generate`` call it belongs to.

    With the KV cache on, the cache length is the offset. With it off, every pass restarts at 0
    with the whole sequence; a pass whose prefix is the remembered prompt continues that prompt,
    anything else starts a new one.
    """

    def __init__(self) -> None:
        self.offset = 0
        self.prompt_len = 0
        self._prompt_ids: torch.Tensor | None = None

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        tokens = ids if ids is not None else embeds
        if tokens is None:
            return
        seq = tokens.shape[1]
        # transformers >= 5.24 names the KV cache ``cache``, earlier releases ``past_key_values``
        cache = next((kwargs[k] for k in _CACHE_KWARGS if kwargs.get(k) is not None), None)
        past = int(cache.get_seq_length()) if cache is not None else 0
        if past > 0:
            self.offset = past
            return
        self.offset = 0
        if (
            ids is not None
            and self._prompt_ids is not None
            and seq > self.prompt_len
            and ids.shape[0] == self._prompt_ids.shape[0]
            and torch.equal(ids[:, : self.prompt_len], self._prompt_ids)
        ):
            return  # the KV cache is off and this pass continues the remembered prompt
        self.prompt_len = seq
        self._prompt_ids = ids.detach().clone() if ids is not None else None


def _outer_module(vlm: VLM) -> nn.Module:
    model = vlm.model
    # ``PeftModel.generate`` calls the wrapped model directly, so hook the wrapped model.
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@contextmanager
def intervene(vlm: VLM, hook_name: str, edit: Edit, positions: Positions = "all") -> Iterator[None]:
    """Apply ``edit`` to the residual at ``hook_name`` on the chosen positions inside the block."""
    check_positions(positions)
    hook_point(vlm, hook_name)  # a clear error for a hook the model lacks
    if positions == "all":
        with hooked(vlm, {hook_name: edit}):
            yield
        return

    tracker = _PositionTracker()
    prompt_side = positions == "prompt"

    def hook(hidden: torch.Tensor) -> torch.Tensor | None:
        seq = hidden.shape[1]
        split = min(max(tracker.prompt_len - tracker.offset, 0), seq)  # first generated pos
        if prompt_side:
            if split == 0:
                return None
            if split == seq:
                return edit(hidden)
            return torch.cat([edit(hidden[:, :split]), hidden[:, split:]], dim=1)
        if split == seq:
            return None
        if split == 0:
            return edit(hidden)
        return torch.cat([hidden[:, :split], edit(hidden[:, split:])], dim=1)

    with ExitStack() as stack:
        handle = _outer_module(vlm).register_forward_pre_hook(tracker, with_kwargs=True)
        stack.callback(handle.remove)
        stack.enter_context(hooked(vlm, {hook_name: hook}))
        yield


# ---- an SAE at its hook ----------------------------------------------------------------------
def check_sae_fits(vlm: VLM, sae: Any, hook_name: str) -> None:
    """Clear errors for an SAE that cannot read this model's residual at ``hook_name``."""
    hook_point(vlm, hook_name)
    if int(sae.cfg.d_in) != vlm.d_model:
        raise VSFAError(
            f"the SAE reads {sae.cfg.d_in}-dimensional activations, but {vlm.name_or_path} has "
            f"d_model {vlm.d_model} at {hook_name}; use an SAE trained on this model"
        )


def sae_hook(vlm: VLM, sae: Any, hook_name: str | None = None) -> str:
    """The hook to steer ``sae``'s latents at (``hook_name``, else the SAE's own), checked to
    exist in ``vlm`` with the SAE's width."""
    hook = sae_hook_name(sae, hook_name)
    check_sae_fits(vlm, sae, hook)
    return hook


def _sae_on(sae: Any, hidden: torch.Tensor) -> Any:
    if sae.W_dec.device != hidden.device:
        sae.to(hidden.device)
    return sae


# ---- edits -----------------------------------------------------------------------------------
def add_edit(direction: torch.Tensor, alpha: float) -> Edit:
    """``h + alpha * direction``."""
    scaled = DeviceCopies(direction.float() * float(alpha))

    def edit(hidden: torch.Tensor) -> torch.Tensor:
        return hidden + scaled.like(hidden)

    return edit


def project_out_edit(direction: torch.Tensor, scale: float = 1.0) -> Edit:
    """``h - scale * (h . u) u`` with ``u`` the unit direction (scale 1 removes it entirely)."""
    norm = direction.float().norm()
    if not torch.isfinite(norm) or norm == 0:
        raise VSFAError("cannot project out a zero (or non-finite) direction")
    unit = DeviceCopies(direction.float() / norm)

    def edit(hidden: torch.Tensor) -> torch.Tensor:
        u = unit.like(hidden)
        return hidden - float(scale) * (hidden @ u).unsqueeze(-1) * u

    return edit


def latent_edit(
    sae: Any, latents: Latents, *, value: float | None = None, scale: float = 1.0
) -> Edit:
    """Move the chosen latents' contributions ``f_i(h) * W_dec[i]``, leaving the rest of ``h``.

    ``value=None`` ablates: each activation becomes ``(1 - scale) * f_i`` (``scale`` 1 removes
    it, 2 reverses it). A ``value`` clamps: ``h + sum_i (value - f_i(h)) * W_dec[i]``. A set is
    encoded once, so its latents are edited together, not one after another.
    """
    chosen = check_latents(sae, latents)
    fast = plain_relu_activation(sae, chosen)
    keep = 1.0 - float(scale)

    def target_of(acts: torch.Tensor) -> torch.Tensor:
        return acts * keep if value is None else torch.full_like(acts, float(value))

    if fast is not None:
        decoder = DeviceCopies(sae.W_dec[chosen].detach().float())

        def fast_edit(hidden: torch.Tensor) -> torch.Tensor:
            x = hidden.float()
            acts = fast(x)
            change = (target_of(acts) - acts) @ decoder.like(x)
            return hidden + change.to(hidden.dtype)

        return fast_edit

    def edit(hidden: torch.Tensor) -> torch.Tensor:
        model = _sae_on(sae, hidden)
        x = hidden.to(model.W_dec.dtype)
        with torch.no_grad():
            acts = latent_activation(model, x, chosen)
            change = (target_of(acts) - acts) @ model.W_dec[chosen] * output_scale(model, x)
        return hidden + change.to(hidden.dtype)

    return edit


# ---- context managers (the public steering API) ----------------------------------------------
def add_direction(
    vlm: VLM, hook_name: str, direction: torch.Tensor, alpha: float, positions: Positions = "all"
) -> Any:
    """Add ``alpha * direction`` to the residual at ``hook_name`` (a context manager)."""
    direction = _check_direction(vlm, direction)
    return intervene(vlm, hook_name, add_edit(direction, alpha), positions)


def project_out(
    vlm: VLM,
    hook_name: str,
    direction: torch.Tensor,
    scale: float = 1.0,
    positions: Positions = "all",
) -> Any:
    """Remove the residual's component along ``direction`` (times ``scale``)."""
    direction = _check_direction(vlm, direction)
    return intervene(vlm, hook_name, project_out_edit(direction, scale), positions)


def add_latent(
    vlm: VLM, sae: Any, latent: Latents, alpha: float, positions: Positions = "all",
    hook_name: str | None = None,
) -> Any:  # fmt: skip
    """Add ``alpha * W_dec[latent]`` (for a set: ``alpha *`` the sum of their rows) at the SAE's
    hook."""
    hook = sae_hook(vlm, sae, hook_name)
    return add_direction(vlm, hook, latent_direction(sae, latent), alpha, positions)


def ablate_latent(
    vlm: VLM, sae: Any, latent: Latents, scale: float = 1.0, positions: Positions = "all",
    hook_name: str | None = None,
) -> Any:  # fmt: skip
    """Subtract ``scale * f_i(h) * W_dec[i]`` at the SAE's hook (``scale`` 1: full ablation);
    for a set of latents, of each of them."""
    hook = sae_hook(vlm, sae, hook_name)
    return intervene(vlm, hook, latent_edit(sae, latent, scale=scale), positions)


def clamp_latent(
    vlm: VLM, sae: Any, latent: Latents, value: float, positions: Positions = "all",
    hook_name: str | None = None,
) -> Any:  # fmt: skip
    """Set the latent's activation (each latent's, for a set) to ``value`` at the SAE's hook."""
    hook = sae_hook(vlm, sae, hook_name)
    return intervene(vlm, hook, latent_edit(sae, latent, value=float(value)), positions)


def _check_direction(vlm: VLM, direction: torch.Tensor) -> torch.Tensor:
    if not isinstance(direction, torch.Tensor):
        direction = torch.as_tensor(direction, dtype=torch.float32)
    direction = direction.detach().reshape(-1)
    if direction.numel() != vlm.d_model:
        raise VSFAError(
            f"steering direction has {direction.numel()} dimensions, but {vlm.name_or_path} has "
            f"d_model {vlm.d_model}"
        )
    if not torch.isfinite(direction).all():
        raise VSFAError("steering direction has non-finite values")
    return direction
