"""The figure of a monitored training run: persona projection and ASR against the step.

:func:`monitor_figure` reads ``RUN/monitor.jsonl`` (:mod:`interp.monitor.training`) and draws
the projection onto the persona vector (left axis) and the ASR and capability (right axis,
0-1); :func:`monitor_runs` finds the monitored runs under a folder (the dashboard shows each);
:func:`trend` is the Spearman correlation of a signal with the step.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

MONITOR_FILE = "monitor.jsonl"
FIGURE_FILE = "monitor.html"
SKIP_DIRS = {"adapter", "model", "checkpoints", "images", "shards", "__pycache__"}


def read_monitor(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The lines of a ``monitor.jsonl`` (a run folder or the file), by step; a line that is not
    whole JSON (a write cut short) is skipped."""
    path = Path(run_dir)
    path = path / MONITOR_FILE if path.is_dir() else path
    lines = []
    for text in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict) and "step" in line:
            lines.append(line)
    return sorted({line["step"]: line for line in lines}.values(), key=lambda line: line["step"])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):  # ties share their mean rank
        ranks[values == value] = ranks[values == value].mean()
    return ranks


def trend(steps: list[float], values: list[float]) -> float | None:
    """Spearman correlation of ``values`` with ``steps`` (``None`` with fewer than 3 points or
    a constant signal)."""
    if len(steps) < 3:
        return None
    a, b = _ranks(np.asarray(steps, float)), _ranks(np.asarray(values, float))
    if a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def monitor_summary(run_dir: str | os.PathLike) -> dict[str, Any]:
    """First and last value, change and Spearman trend with the step of every signal."""
    lines = read_monitor(run_dir)
    summary: dict[str, Any] = {"checkpoints": len(lines)}
    keys = [k for k in (lines[0] if lines else {}) if k not in ("step", "seconds")]
    for key in keys:
        rows = [(line["step"], line[key]) for line in lines if line.get(key) is not None]
        if rows:
            steps, values = zip(*rows)
            summary[key] = {
                "first": values[0], "last": values[-1], "change": values[-1] - values[0],
                "spearman_step": trend(list(steps), list(values)),
            }  # fmt: skip
    return summary


def monitor_figure(run_dir: str | os.PathLike, *, title: str | None = None) -> go.Figure | None:
    """Persona projection (and latents) and ASR / capability against the step; ``None`` when
    the run has no monitor lines."""
    lines = read_monitor(run_dir)
    if not lines:
        return None
    steps = [line["step"] for line in lines]
    fig = go.Figure()
    for key, name in (
        ("projection", "persona projection"),
        ("projection_harmful", "projection, harmful probes"),
        ("latents", "selected latents"),
    ):
        if any(key in line for line in lines):
            values = [line.get(key) for line in lines]
            fig.add_trace(go.Scatter(x=steps, y=values, name=name, mode="lines+markers"))
    for key, name in (("asr", "ASR"), ("capability", "capability")):
        if any(key in line for line in lines):
            values = [line.get(key) for line in lines]
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=values,
                    name=name,
                    mode="lines+markers",
                    yaxis="y2",
                    line={"dash": "dash"},
                )  # fmt: skip
            )
    fig.update_layout(
        title=title or f"persona during training: {Path(run_dir).name}",
        xaxis={"title": "optimizer step"},
        yaxis={"title": "projection on the persona vector"},
        yaxis2={"title": "ASR / capability", "overlaying": "y", "side": "right", "range": [0, 1]},
        legend={"orientation": "h", "y": -0.2},
        template="plotly_white",
    )
    return fig


def write_monitor_figure(run_dir: str | os.PathLike) -> Path | None:
    """``RUN/monitor.html``: the figure as a standalone page (plotly.js inline)."""
    from interp.artifacts import write_text_atomic

    fig = monitor_figure(run_dir)
    if fig is None:
        return None
    return write_text_atomic(Path(run_dir) / FIGURE_FILE, fig.to_html(include_plotlyjs=True))


def monitor_runs(root: str | os.PathLike) -> list[Path]:
    """Folders under ``root`` (itself included) that hold a ``monitor.jsonl``, sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        if MONITOR_FILE in files:
            found.append(Path(folder))
    return sorted(found)
