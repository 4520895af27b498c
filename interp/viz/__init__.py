"""Figures and standalone HTML dashboards, read from the stages' artifacts on disk.

Figures (:mod:`interp.viz.figures`) are functions of the stages' JSON outputs; the dashboard
(:func:`interp.viz.dashboard.write_dashboard`) puts them in one offline HTML file. Nothing here
runs a stage. The names below are imported on first use, so the CLI does not load plotly to
list its commands.
"""

from interp.lazy import lazy_getattr

_HOME = {
    "asr_bars": "interp.viz.figures",
    "frontier_figure": "interp.viz.frontier",
    "collect_run": "interp.viz.dashboard",
    "density_figure": "interp.viz.latent_figures",
    "latent_page": "interp.viz.latent_page",
    "portable_figures": "interp.viz.notebook",
    "latent_histogram": "interp.viz.figures",
    "latent_scatter": "interp.viz.figures",
    "logit_effect": "interp.viz.figures",
    "render_dashboard": "interp.viz.dashboard",
    "results_table": "interp.viz.figures",
    "sae_training_curves": "interp.viz.figures",
    "steering_curves": "interp.viz.figures",
    "steering_findings": "interp.viz.dashboard",
    "write_dashboard": "interp.viz.dashboard",
    "write_frontier_html": "interp.viz.frontier",
}
__all__ = sorted(_HOME)
__getattr__ = lazy_getattr(__name__, _HOME)
