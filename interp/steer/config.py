"""What a steering sweep steers, how hard, and against which controls (:class:`SteerConfig`).

Light on purpose (no torch): ``vsfa steer`` builds its options from this module at start-up.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from interp.errors import VSFAError
from interp.models.placement import check_placement

Positions = Literal["all", "prompt", "generated"]
POSITIONS: tuple[str, ...] = typing.get_args(Positions)


def check_positions(positions: str) -> str:
    """``positions`` when it is one of :data:`POSITIONS`; a clear error otherwise."""
    if positions not in POSITIONS:
        raise VSFAError(f"unknown positions {positions!r}; expected one of {', '.join(POSITIONS)}")
    return positions


def parse_alphas(text: str | Sequence[float], option: str = "--alphas") -> list[float]:
    """``"0,2,4,8"`` (or a list) -> distinct finite floats, in order; a clear error otherwise."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    alphas = []
    for part in parts:
        try:
            value = float(part.strip() if isinstance(part, str) else part)
        except (TypeError, ValueError):
            raise VSFAError(f"{option}: {part!r} is not a number (expected e.g. 0,2,4,8)") from None
        if not math.isfinite(value):
            raise VSFAError(f"{option}: {part!r} is not a finite number")
        alphas.append(value)
    if not alphas:
        raise VSFAError(f"{option}: give at least one value, e.g. 0,2,4,8")
    return list(dict.fromkeys(alphas))


@dataclass
class SteerConfig:
    """Options of :func:`interp.steer.steer_sweep` (and of ``vsfa steer``)."""

    latent: int | list[int] | None = None
    """latent index to steer, or several (7,12,40) steered together"""
    latents: str | None = None
    """latents.json: steer its selected latent(s) (when --latent is not given); its diff of
    means is the baseline"""
    mode: str = "add"
    """a registered steering mode (interp.steer.STEERING_MODES): add, ablate, clamp,
    project-out, ..."""
    alphas: list[float] = field(default_factory=lambda: [0, 2, 4, 8])
    """strengths: add = multiples of the latents' decoder row; ablate = fraction of their
    contribution removed; clamp = their activation; project-out = fraction of the residual
    along their decoder row removed"""
    positions: Positions = "all"
    """positions steered: all, prompt or generated"""
    hook: str | None = None
    """hook to steer at (default: the SAE's hook)"""
    n_random: int = 19
    """random-latent controls (sets of the same size for a set); 19, so the latent's rank among
    them can reach p = 0.05 (the smallest rank p is 1 / (n_random + 1))"""
    diff_of_means: str | None = None
    """latents.json or .safetensors with the diff-of-means direction (default: --latents)"""
    dom_alphas: list[float] | None = None
    """alphas for the diff of means (default: the latent's alphas, at the latent's norm)"""
    seed: int = 0
    """seed of the random latents (vsfa steer also seeds sampling and subsampling with it)"""
    n_boot: int = 1000
    """bootstrap resamples of each metric's interval"""
    device_map: str | None = None
    """place the model over devices instead of moving it to --device: auto (GPUs, then CPU,
    then disk), balanced, sequential, one device, MODULE=DEVICE,... or a .json map"""
    max_memory: str | None = None
    """per-device caps for --device-map auto, e.g. 0=20GiB,cpu=60GiB (what does not fit is
    offloaded to disk)"""
    quiet: bool = False
    """no progress bars"""

    def __post_init__(self) -> None:
        if self.latent is None and self.latents is None:
            raise VSFAError("give --latent I or --latents latents.json (its selected latent)")
        self.alphas = parse_alphas(self.alphas)
        if self.dom_alphas is not None:
            self.dom_alphas = parse_alphas(self.dom_alphas, "--dom-alphas")
        check_positions(self.positions)
        if self.n_random < 0:
            raise VSFAError("--n-random must be >= 0")
        if self.n_boot < 0:
            raise VSFAError("--n-boot must be >= 0")
        check_placement(self.device_map, self.max_memory)

    @property
    def baseline(self) -> str | None:
        """Where the diff-of-means direction is read from (``diff_of_means``, else ``latents``)."""
        return self.diff_of_means or self.latents
