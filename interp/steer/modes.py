"""Steering modes: what a sweep does to the chosen latents at each alpha, and to its controls.

Each mode is one object registered in :data:`STEERING_MODES` under its ``--mode`` name. A sweep
asks it for three hook factories at a :class:`SteerSite` (zero-argument callables returning a
steering context manager, what :func:`interp.eval.run.evaluate` enters around every batch):

* :meth:`SteeringMode.hook`: the chosen latent (or set) at ``alpha``;
* :meth:`SteeringMode.random_control`: the same intervention on a random latent set; ``norm`` is
  the chosen set's decoder norm, for modes whose strength depends on it;
* :meth:`SteeringMode.baseline`: the difference-of-means direction at ``alpha``, or ``None``
  when the mode has no such baseline.

The direction modes (``add-direction``, ``project-out-direction``) steer any direction: a
tensor, ``FILE.safetensors:KEY`` (:func:`interp.steer.directions.load_direction`), or latents
(their decoder direction), so the persona vector, a probe's weights and the difference of means
steer through the same registry as SAE latents.

A new mode is one subclass here (or in a plug-in) added to the registry, and its test.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from interp.errors import VSFAError
from interp.registry import Registry
from interp.sae.latents import Latents, latent_direction
from interp.steer.directions import DirectionSpec, load_direction
from interp.steer.interventions import ablate_latent, add_direction, clamp_latent, project_out

HookFactory = Callable[[], Any]
"""A zero-argument callable returning a steering context manager."""


@dataclass(frozen=True)
class SteerSite:
    """Where a sweep steers: the model, the SAE, the hook and the positions; its methods are the
    hook factories of the steering context managers there."""

    vlm: Any
    sae: Any
    hook_name: str
    positions: str = "all"

    def add(self, direction: torch.Tensor, alpha: float) -> HookFactory:
        """:func:`interp.steer.interventions.add_direction` of ``direction`` at ``alpha``."""
        return functools.partial(
            add_direction, self.vlm, self.hook_name, direction, alpha, self.positions
        )

    def project_out(self, direction: torch.Tensor, alpha: float) -> HookFactory:
        """:func:`interp.steer.interventions.project_out` of ``direction`` at ``alpha``."""
        return functools.partial(
            project_out, self.vlm, self.hook_name, direction, alpha, self.positions
        )

    def edit_latents(
        self, steer: Callable[..., Any], latents: Latents, alpha: float
    ) -> HookFactory:
        """``steer(vlm, sae, latents, alpha, positions, hook_name)``: ablate or clamp."""
        args = (self.vlm, self.sae, latents, alpha, self.positions, self.hook_name)
        return functools.partial(steer, *args)


class SteeringMode:
    """One way of steering latents; subclasses override :meth:`hook` (and what differs)."""

    name = ""
    unsteered_at_zero = False
    """alpha 0 changes nothing: the sweep evaluates it once, unsteered, and shares it"""
    has_baseline = False
    """the mode steers the diff-of-means direction too (:meth:`baseline`)"""
    baseline_at_latent_norm = False
    """the diff of means is rescaled to the chosen latents' decoder norm (unless own alphas)"""

    def hook(self, site: SteerSite, latents: Latents, alpha: float) -> HookFactory:
        raise NotImplementedError

    def random_control(
        self, site: SteerSite, latents: Latents, alpha: float, norm: float
    ) -> HookFactory:
        return self.hook(site, latents, alpha)

    def baseline(
        self, site: SteerSite, direction: torch.Tensor, alpha: float
    ) -> HookFactory | None:
        return None


STEERING_MODES: Registry[SteeringMode] = Registry("steering mode")


def steering_mode(name: str) -> SteeringMode:
    """The registered mode ``name``; an unknown one is one error naming ``--mode``."""
    try:
        return STEERING_MODES.get(name)
    except VSFAError as error:
        raise VSFAError(f"--mode: {error}") from None


def _register(mode: type[SteeringMode]) -> type[SteeringMode]:
    STEERING_MODES.add(mode.name, mode())
    return mode


class _ProjectsOutBaseline(SteeringMode):
    """Baseline: project the diff of means out (``alpha`` = fraction removed)."""

    unsteered_at_zero = True
    has_baseline = True

    def baseline(self, site: SteerSite, direction: torch.Tensor, alpha: float) -> HookFactory:
        return site.project_out(direction, alpha)


@_register
class Add(SteeringMode):
    """``h + alpha * W_dec[i]`` (for a set, the sum of their rows): alpha is in the latents' own
    activation units. Random sets are rescaled to the chosen set's norm; the diff of means is
    added at the same alphas and norm."""

    name = "add"
    unsteered_at_zero = True
    has_baseline = True
    baseline_at_latent_norm = True

    def hook(self, site: SteerSite, latents: Latents, alpha: float) -> HookFactory:
        return site.add(latent_direction(site.sae, latents), alpha)

    def random_control(
        self, site: SteerSite, latents: Latents, alpha: float, norm: float
    ) -> HookFactory:
        direction = latent_direction(site.sae, latents)
        return site.add(direction * (norm / direction.norm().clamp(min=1e-12)), alpha)

    def baseline(self, site: SteerSite, direction: torch.Tensor, alpha: float) -> HookFactory:
        return site.add(direction, alpha)


@_register
class Ablate(_ProjectsOutBaseline):
    """Remove ``alpha *`` each latent's own contribution ``f_i(h) W_dec[i]`` (1 = full
    ablation, 2 = reversed); the diff of means is projected out."""

    name = "ablate"

    def hook(self, site: SteerSite, latents: Latents, alpha: float) -> HookFactory:
        return site.edit_latents(ablate_latent, latents, alpha)


@_register
class Clamp(SteeringMode):
    """Set each latent's activation to ``alpha`` (alpha 0 ablates); no diff-of-means baseline."""

    name = "clamp"

    def hook(self, site: SteerSite, latents: Latents, alpha: float) -> HookFactory:
        return site.edit_latents(clamp_latent, latents, alpha)


@_register
class ProjectOut(_ProjectsOutBaseline):
    """Remove ``alpha *`` the residual's component along the latents' decoder direction (for a
    set, the sum of their rows; 1 removes it); the diff of means is projected out."""

    name = "project-out"

    def hook(self, site: SteerSite, latents: Latents, alpha: float) -> HookFactory:
        return site.project_out(latent_direction(site.sae, latents), alpha)


def _direction_of(site: SteerSite, target: Latents | DirectionSpec) -> torch.Tensor:
    """A direction target as a vector: latent indices give their decoder direction (the site's
    SAE), anything else is read by :func:`interp.steer.directions.load_direction`."""
    if isinstance(target, int) or (
        isinstance(target, (list, tuple)) and target and all(isinstance(i, int) for i in target)
    ):
        if site.sae is None:
            raise VSFAError(f"latents {target} need an SAE; give a direction vector instead")
        return latent_direction(site.sae, target)
    return load_direction(target, site.vlm.d_model)


@_register
class AddDirection(Add):
    """``h + alpha * d`` for a direction ``d`` (a tensor, ``FILE.safetensors:KEY``, or latents):
    alpha is in multiples of ``d``. Random controls are rescaled to ``norm``."""

    name = "add-direction"

    def hook(self, site: SteerSite, target: Any, alpha: float) -> HookFactory:
        return site.add(_direction_of(site, target), alpha)

    def random_control(
        self, site: SteerSite, target: Any, alpha: float, norm: float
    ) -> HookFactory:
        direction = _direction_of(site, target)
        return site.add(direction * (norm / direction.norm().clamp(min=1e-12)), alpha)


@_register
class ProjectOutDirection(ProjectOut):
    """``h - alpha * (h . u) u`` for the unit direction ``u`` of a direction target (1 removes
    the residual's component along it); the diff of means is projected out."""

    name = "project-out-direction"

    def hook(self, site: SteerSite, target: Any, alpha: float) -> HookFactory:
        return site.project_out(_direction_of(site, target), alpha)
