"""Steering: add, ablate or clamp an SAE latent (or any direction) during generation.

The context managers install native forward hooks (interp.hooks.native) for the duration of a
block; :func:`steer_sweep` runs a dose-response sweep through the eval harness with random-latent
and difference-of-means controls.
"""

from interp.steer.interventions import (
    POSITIONS,
    Positions,
    ablate_latent,
    add_direction,
    add_latent,
    check_latent,
    clamp_latent,
    intervene,
    latent_activation,
    latent_direction,
    project_out,
    sae_hook_name,
)

__all__ = [
    "POSITIONS",
    "Positions",
    "ablate_latent",
    "add_direction",
    "add_latent",
    "check_latent",
    "clamp_latent",
    "intervene",
    "latent_activation",
    "latent_direction",
    "project_out",
    "sae_hook_name",
]
