"""Figures of one latent's card beyond :mod:`interp.viz.figures`: where the latent sits in the
firing density of every latent of its SAE (from ``latents.json``'s ``density``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

SIDE_COLORS = {"base": "#1f77b4", "tuned": "#d62728"}


def density_figure(
    density: Mapping[str, Any], latent_freq: Mapping[str, Any], index: int
) -> go.Figure:
    """Histogram of log10 firing density of every latent (base and tuned overlaid), with this
    latent's density on each model as a vertical line; dead latents are named in the title.

    ``latent_freq`` holds ``base`` / ``tuned`` (a card's ``density``) or ``base_freq`` /
    ``tuned_freq`` (a latent entry)."""
    edges = [float(e) for e in density.get("log10_edges") or []]
    centres = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
    width = edges[1] - edges[0] if len(edges) > 1 else 1.0
    fig = go.Figure()
    for side, color in SIDE_COLORS.items():
        counts = (density.get("counts") or {}).get(side)
        if counts is None:
            continue
        fig.add_bar(
            name=f"{side}: all latents", x=centres, y=counts, width=width,
            marker_color=color, opacity=0.5,
        )  # fmt: skip
    top = max([max(c or [0]) for c in (density.get("counts") or {}).values()] + [1])
    for side, color in SIDE_COLORS.items():
        freq = latent_freq.get(side, latent_freq.get(f"{side}_freq"))
        if isinstance(freq, int | float) and freq > 0:
            x = math.log10(freq)
            fig.add_scatter(
                name=f"{side}: latent {index} ({freq:.2%})", x=[x, x], y=[0, top],
                mode="lines", line={"color": color, "width": 3, "dash": "dash"},
            )  # fmt: skip
    dead = density.get("dead") or {}
    dead_text = ", ".join(f"{side} {n}" for side, n in dead.items())
    fig.update_layout(
        barmode="overlay",
        title=f"Latent {index}: firing density among {density.get('n_latents', '?')} latents"
        + (f" (dead: {dead_text})" if dead_text else ""),
        xaxis_title="log10 fraction of cached tokens the latent fires on",
        yaxis_title="latents",
        showlegend=True,
        legend={"orientation": "h", "y": -0.3},
    )
    return fig
