"""SAE latents as indices, directions and activations (read by diffing and by steering).

A latent is named by its index; a set of latents (the persona is often split across a few
latents of a small SAE) is a list of indices, steered and reported together. Results write one
index as a plain ``int`` and a set as a list (:func:`as_latents`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from interp.errors import VSFAError

Latents = int | Sequence[int]
"""One latent index, or a set of them steered together (the persona is often split across a
few latents of a small SAE)."""


def as_latents(indices: Sequence[int]) -> Latents:
    """Indices in the ``Latents`` form results are written in: one index stays a plain ``int``."""
    values = [int(i) for i in indices]
    return values[0] if len(values) == 1 else values


def check_latent(sae: Any, latent: int) -> int:
    """``latent`` when it is an index of one of the SAE's latents; a clear error otherwise."""
    d_sae = int(sae.cfg.d_sae)
    if isinstance(latent, bool) or not isinstance(latent, int) or not 0 <= latent < d_sae:
        raise VSFAError(f"latent index {latent!r} is out of range: the SAE has {d_sae} latents")
    return latent


def check_latents(sae: Any, latents: Latents) -> list[int]:
    """One index or several -> distinct in-range indices, in the order given."""
    chosen = [latents] if isinstance(latents, int) else list(latents)
    if not chosen:
        raise VSFAError("give at least one latent to steer")
    chosen = [check_latent(sae, latent) for latent in chosen]
    if len(set(chosen)) != len(chosen):
        raise VSFAError(f"latents {chosen} repeat an index")
    return chosen


def sae_hook_name(sae: Any, override: str | None = None) -> str:
    """The hook an SAE was trained on (its sae_lens metadata), or ``override``."""
    if override:
        return override
    name = getattr(getattr(sae.cfg, "metadata", None), "hook_name", None)
    if not name:
        raise VSFAError(
            "the SAE does not record its hook (cfg.metadata.hook_name); pass --hook "
            "blocks.L.hook_resid_post"
        )
    return str(name)


def latent_direction(sae: Any, latents: Latents) -> torch.Tensor:
    """The latent's decoder row ``W_dec[latent]`` (``[d_in]``, float32, detached); for a set,
    the sum of their rows.

    Adding ``alpha *`` this raises each latent's contribution as if it fired ``alpha`` higher,
    so alphas are in the latents' own activation units (compare with their mean activation).
    """
    chosen = check_latents(sae, latents)
    return sae.W_dec[chosen].detach().float().sum(0).clone()


def latent_activation(sae: Any, x: torch.Tensor, latents: Latents) -> torch.Tensor:
    """The SAE's activation of ``latents`` on residuals ``x[..., d_in]``: ``x.shape[:-1]`` for
    one index, ``[..., n]`` for a list of ``n``."""
    from sae_lens.saes.standard_sae import StandardSAE

    index = latents if isinstance(latents, int) else list(latents)
    if type(sae) is StandardSAE:  # ReLU SAE: the chosen encoder columns suffice
        sae_in = sae.process_sae_in(x)
        return torch.relu(sae_in @ sae.W_enc[:, index] + sae.b_enc[index])
    return sae.encode(x)[..., index]  # TopK / JumpReLU ...: need the whole code


def output_scale(sae: Any, x: torch.Tensor) -> torch.Tensor | float:
    """Factor that maps the SAE's decoder space back to the residual (per-token normalisers)."""
    mode = getattr(sae.cfg, "normalize_activations", "none")
    if mode == "constant_norm_rescale":
        return x.norm(dim=-1, keepdim=True) / (sae.cfg.d_in**0.5)
    if mode == "layer_norm":
        return x.std(dim=-1, keepdim=True) + 1e-5
    if mode == "covariance_whitening":
        raise VSFAError(
            "SAE uses covariance whitening at run time; fold it first "
            "(sae.fold_activation_whitening) so decoder rows live in the residual space"
        )
    return 1.0


class DeviceCopies:
    """Per-(device, dtype) copies of a tensor, so each forward does not copy it again."""

    def __init__(self, vector: torch.Tensor) -> None:
        self.vector = vector.detach()
        self._cast: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def like(self, hidden: torch.Tensor) -> torch.Tensor:
        key = (hidden.device, hidden.dtype)
        if key not in self._cast:
            self._cast[key] = self.vector.to(device=hidden.device, dtype=hidden.dtype)
        return self._cast[key]


def plain_relu_activation(
    sae: Any, latents: list[int]
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """For a plain ReLU SAE (no run-time normalisation or reshaping), ``f`` of the chosen
    latents as one matrix product with cached weights: no sae_lens hook points on the per-token
    path. ``None`` for any other SAE (use :func:`latent_activation`)."""
    from sae_lens.saes.standard_sae import StandardSAE

    cfg = sae.cfg
    plain = (
        type(sae) is StandardSAE
        and getattr(cfg, "normalize_activations", "none") in ("none", "expected_average_only_in")
        and getattr(cfg, "reshape_activations", "none") == "none"
    )
    if not plain:
        return None
    with torch.no_grad():
        w = sae.W_enc[:, latents].detach().float().clone()
        # (x - b_dec) @ w + b = x @ w + (b - b_dec @ w)
        shift = sae.b_enc[latents].detach().float() - float(cfg.apply_b_dec_to_input) * (
            sae.b_dec.detach().float() @ w
        )
    weights, offsets = DeviceCopies(w), DeviceCopies(shift)

    def activation(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ weights.like(x) + offsets.like(x))

    return activation
