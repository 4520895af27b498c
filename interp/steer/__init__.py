"""Steering: add, ablate or clamp an SAE latent, a set of latents, or any direction, during
generation.

The context managers install native forward hooks (interp.hooks.native) for the duration of a
block; :func:`steer_sweep` runs a dose-response sweep through the eval harness with random-latent
and difference-of-means controls.
"""

from interp.steer.interventions import (
    POSITIONS,
    Latents,
    Positions,
    ablate_latent,
    add_direction,
    add_latent,
    check_latent,
    check_latents,
    clamp_latent,
    intervene,
    latent_activation,
    latent_direction,
    project_out,
    sae_hook_name,
)
from interp.steer.sweep import MODES, parse_alphas, render_markdown, steer_sweep

__all__ = [
    "MODES",
    "POSITIONS",
    "Latents",
    "Positions",
    "ablate_latent",
    "add_direction",
    "add_latent",
    "check_latent",
    "check_latents",
    "clamp_latent",
    "intervene",
    "latent_activation",
    "latent_direction",
    "parse_alphas",
    "project_out",
    "render_markdown",
    "sae_hook_name",
    "steer_sweep",
]
