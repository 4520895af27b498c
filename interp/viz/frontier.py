"""The steering frontier as a figure, read from ``frontier.json`` (``vsfa persona frontier``).

:func:`frontier_figure`: ASR change against capability change, in points, one line per method
through its strengths (added to the base model: solid; removed from the tuned model: dashed)
with 95% intervals as error bars, the random controls as a grey cloud, the unsteered model at
the origin and the capability-cost line of the headline (x = -5 points). Each method's headline
and rank p are in its legend entry. :func:`write_frontier_html` writes it as one offline HTML
file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from interp.viz.data import esc
from interp.viz.figures import PALETTE


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _bars(points: list[Mapping[str, Any]], key: str) -> dict[str, Any] | None:
    plus, minus = [], []
    for point in points:
        value, ci = point.get(key), point.get(f"{key}_ci")
        if value is None or not ci or None in ci:
            plus.append(0.0)
            minus.append(0.0)
            continue
        plus.append(100.0 * max(ci[1] - value, 0.0))
        minus.append(100.0 * max(value - ci[0], 0.0))
    if not any(plus + minus):
        return None
    return {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus,
            "thickness": 1}  # fmt: skip


def _label(name: str, entry: Mapping[str, Any]) -> str:
    top = entry.get("headline") or {}
    change = top.get("asr_change_at_cap5")
    text = esc(name)
    if change is not None:
        text += f": {100 * change:+.1f} pts"
    if entry.get("random_rank_p") is not None:
        text += f", rank p {entry['random_rank_p']:.2f}"
    return text


def frontier_figure(frontier: Mapping[str, Any]) -> go.Figure:
    """ASR change against capability change (points) for every method of a ``frontier.json``
    (see the module docstring)."""
    fig = go.Figure()
    cloud_x, cloud_y, cloud_text = [], [], []
    for m, (name, entry) in enumerate((frontier.get("methods") or {}).items()):
        color = PALETTE[m % len(PALETTE)]
        for curve in (entry.get("controls") or {}).get("points") or []:
            for point in curve:
                if point.get("asr_change") is None or point.get("capability_change") is None:
                    continue
                cloud_x.append(_pct(point["capability_change"]))
                cloud_y.append(_pct(point["asr_change"]))
                cloud_text.append(f"control of {esc(name)}, alpha {point['alpha']:g}")
        points = [p for p in entry.get("points") or [] if p.get("asr_change") is not None]
        origin = {"alpha": 0.0, "asr_change": 0.0, "capability_change": 0.0}
        curve = [origin, *points] if entry.get("mode") else points
        fig.add_scatter(
            x=[_pct(p.get("capability_change")) for p in curve],
            y=[_pct(p["asr_change"]) for p in curve],
            error_x=_bars(curve, "capability_change"),
            error_y=_bars(curve, "asr_change"),
            mode="lines+markers" if entry.get("mode") else "markers",
            marker={"color": color, "size": 8, "symbol": "circle" if entry.get("mode") else "star"},
            line={"color": color, "dash": "dash" if entry.get("kind") == "ablate" else "solid"},
            name=_label(name, entry),
            text=[f"{esc(name)}, alpha {p['alpha']:g}" for p in curve],
            hovertemplate="%{text}<br>capability %{x:+.1f} pts<br>ASR %{y:+.1f} pts<extra></extra>",
        )  # fmt: skip
    if cloud_x:
        fig.add_scatter(
            x=cloud_x, y=cloud_y, mode="markers", text=cloud_text, name="random controls",
            marker={"color": "rgba(120,120,120,0.35)", "size": 6},
            hovertemplate="%{text}<br>capability %{x:+.1f} pts<br>ASR %{y:+.1f} pts<extra></extra>",
        )  # fmt: skip
    cap = 100.0 * float(frontier.get("capability_cost", 0.05))
    fig.add_vline(x=-cap, line={"color": "#555", "dash": "dot"},
                  annotation_text=f"capability cost {cap:g} pts")  # fmt: skip
    fig.add_hline(y=0, line={"color": "#bbb", "width": 1})
    fig.update_layout(
        title="Steering frontier: ASR change against capability change (vs the unsteered model)",
        xaxis_title="capability change (points)",
        yaxis_title="ASR change (points; down is safer)",
        legend={"title": {"text": "method: headline at the cost line"}},
    )
    return fig


def write_frontier_html(frontier_json: str | os.PathLike, out: str | os.PathLike) -> Path:
    """``frontier.html`` (plotly inline, works offline) of a ``frontier.json``."""
    from interp.artifacts import read_json, write_text_atomic

    fig = frontier_figure(read_json(frontier_json))
    html = fig.to_html(full_html=True, include_plotlyjs=True,
                       config={"displaylogo": False, "responsive": True})  # fmt: skip
    return write_text_atomic(out, html)
