"""Steering: add, ablate, clamp or project out an SAE latent, a set of latents, or any
direction, during generation.

The context managers install native forward hooks (interp.hooks.native) for the duration of a
block; :func:`steer_sweep` runs a dose-response sweep (:class:`SteerConfig`) of a registered
steering mode (:data:`STEERING_MODES`) through the eval harness with random-latent and
difference-of-means controls. Directions (:mod:`interp.steer.directions`), matched random
controls (:mod:`interp.steer.controls`) and paired, template-clustered changes
(:mod:`interp.steer.paired`) serve the persona frontier. Names are imported on first use, so
``vsfa`` reads :class:`SteerConfig` without loading torch.
"""

from __future__ import annotations

from interp.lazy import lazy_getattr

_NAMES = {
    "interp.steer.config": ("POSITIONS", "Positions", "SteerConfig", "parse_alphas"),
    "interp.steer.modes": ("STEERING_MODES", "SteerSite", "SteeringMode"),
    "interp.steer.interventions": (
        "ablate_latent", "add_direction", "add_latent", "clamp_latent", "intervene", "project_out",
    ),
    "interp.steer.directions": ("direction_hook", "load_direction", "random_directions"),
    "interp.steer.controls": (
        "LatentStats", "MatchedLatents", "latent_stats", "latent_stats_for",
        "match_random_latents", "rank_p",
    ),
    "interp.steer.paired": ("clustered_mean", "item_values", "paired_changes", "template_of"),
    "interp.steer.report": ("render_markdown",),
    "interp.steer.sweep": ("steer_sweep",),
    # the SAE latent helpers steering builds on, also importable from here
    "interp.sae.latents": (
        "Latents", "check_latent", "check_latents", "latent_activation", "latent_direction",
        "sae_hook_name",
    ),
}  # fmt: skip
_HOME = {name: module for module, names in _NAMES.items() for name in names}
__all__ = sorted(_HOME)
__getattr__ = lazy_getattr(__name__, _HOME)
