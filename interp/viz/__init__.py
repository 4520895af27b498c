"""Figures, standalone HTML dashboards and the ``vsfa demo`` pipeline.

Figures (:mod:`interp.viz.figures`) are functions of the stages' JSON outputs; the dashboard
(:func:`interp.viz.dashboard.write_dashboard`) puts them in one offline HTML file.
"""

from interp.viz.dashboard import collect_run, render_dashboard, steering_findings, write_dashboard
from interp.viz.figures import (
    asr_bars,
    latent_histogram,
    latent_scatter,
    logit_effect,
    results_table,
    sae_training_curves,
    steering_curves,
)

__all__ = [
    "asr_bars",
    "collect_run",
    "latent_histogram",
    "latent_scatter",
    "logit_effect",
    "render_dashboard",
    "results_table",
    "sae_training_curves",
    "steering_curves",
    "steering_findings",
    "write_dashboard",
]
