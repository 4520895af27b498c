"""Plotly figures, each a function of a stage's JSON output (no recomputation).

* :func:`results_table` and :func:`asr_bars`: the paper-style table and per-benchmark ASR with
  95% confidence intervals (from ``table.json``, the demo's ``results.json`` or ``metrics.json``).
* :func:`latent_scatter`, :func:`latent_histogram`, :func:`logit_effect`: a ``latents.json``.
* :func:`steering_curves`: dose-response with the random-latent control band (``steering.json``).
* :func:`sae_training_curves`: an SAE's ``metrics.json`` history.

All text that comes from models or datasets is HTML-escaped before it reaches a figure: plotly
renders a subset of HTML in labels and decodes entities, so escaped text shows literally.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.errors import VSFAError
from interp.viz.data import (
    METRIC_LABELS,
    RATE_METRICS,
    esc,
    format_metric,
    latent_entries,
    metric_ci,
    metric_value,
    result_rows,
    steering_sweeps,
)

TABLE_COLUMNS = ("asr", "cs", "over_refusal", "capability")
STEER_METRICS = ("asr", "over_refusal", "capability")
HISTOGRAM_BINS = 40
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")


def _error_bars(metrics: Sequence[Any], scale: float = 1.0) -> dict[str, Any] | None:
    """Asymmetric plotly error bars from ``Metric`` CIs (``None`` when no metric has a CI)."""
    plus, minus, any_ci = [], [], False
    for metric in metrics:
        value = metric_value(metric)
        low, high = metric_ci(metric)
        if value is None or low is None or high is None:
            plus.append(0.0)
            minus.append(0.0)
            continue
        any_ci = True
        plus.append(max(high - value, 0.0) * scale)
        minus.append(max(value - low, 0.0) * scale)
    if not any_ci:
        return None
    return {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus}


def results_table(data: Any) -> go.Figure:
    """The paper-style results table: one row per (model, method), metrics with 95% CIs."""
    rows = result_rows(data)
    header = ["Model", "Method", "Seeds"] + [METRIC_LABELS[m] for m in TABLE_COLUMNS]
    columns: list[list[str]] = [
        [esc(r["model"] or "") for r in rows],
        [esc(r["method"]) for r in rows],
        [esc("" if r["n_seeds"] is None else r["n_seeds"]) for r in rows],
    ]
    for metric in TABLE_COLUMNS:
        columns.append([format_metric(r[metric], percent=metric in RATE_METRICS) for r in rows])
    fig = go.Figure(
        go.Table(
            header={"values": header, "align": "left", "fill_color": "#e8eef7"},
            cells={"values": columns, "align": "left"},
        )
    )
    fig.update_layout(title="Results (95% bootstrap CI)", margin={"t": 40, "b": 10})
    return fig


def asr_bars(data: Any) -> go.Figure:
    """Per-benchmark attack success rate, one bar group per benchmark, one colour per method,
    with the 95% CI as error bars; the mean over harmful benchmarks is the last group."""
    rows = result_rows(data)
    benchmarks: list[str] = []
    for row in rows:
        for bench in row["asr_by_benchmark"]:
            if bench not in benchmarks:
                benchmarks.append(bench)
    groups = benchmarks + ["mean"]
    fig = go.Figure()
    for i, row in enumerate(rows):
        metrics = [row["asr_by_benchmark"].get(b) for b in benchmarks] + [row["asr"]]
        values = [metric_value(m) for m in metrics]
        fig.add_bar(
            name=esc(row["method"] if not row["model"] else f"{row['model']} / {row['method']}"),
            x=[esc(g) for g in groups],
            y=[None if v is None else 100.0 * v for v in values],
            error_y=_error_bars(metrics, scale=100.0),
            marker_color=PALETTE[i % len(PALETTE)],
        )
    fig.update_layout(
        barmode="group",
        title="Attack success rate by benchmark (lower is safer; 95% CI)",
        yaxis_title="ASR (%)",
        yaxis_range=[0, 100],
    )
    return fig


def latent_scatter(latents: Mapping[str, Any]) -> go.Figure:
    """Model diff: each latent's mean activation on the base (x) and the tuned model (y).

    The selected candidates are drawn on top and labelled with their index; the diagonal marks
    "no change", so latents that VSFA raised sit above it.
    """
    entries = latent_entries(latents)
    selected = latents.get("selected") or {}
    chosen = {int(i) for i in selected.get("latents") or []}
    runners = {int(i) for i in selected.get("runners_up") or []} - chosen

    def trace(subset: list[dict[str, Any]], name: str, **style: Any) -> go.Scatter:
        return go.Scatter(
            name=name,
            x=[e["base_mean"] for e in subset],
            y=[e["tuned_mean"] for e in subset],
            customdata=[[e["index"], e.get("delta"), e.get("p_value")] for e in subset],
            hovertemplate=(
                "latent %{customdata[0]}<br>base %{x:.3g}, tuned %{y:.3g}"
                "<br>delta %{customdata[1]:.3g}, p %{customdata[2]:.2g}<extra></extra>"
            ),
            **style,
        )

    others = [e for e in entries if int(e["index"]) not in chosen | runners]
    top = [e for e in entries if int(e["index"]) in chosen]
    second = [e for e in entries if int(e["index"]) in runners]
    values = [e["base_mean"] for e in entries] + [e["tuned_mean"] for e in entries]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    fig = go.Figure()
    fig.add_scatter(
        name="no change",
        x=[low, high],
        y=[low, high],
        mode="lines",
        line={"dash": "dot", "color": "#999"},
        hoverinfo="skip",
    )
    fig.add_trace(trace(others, "latents", mode="markers", marker={"color": "#7f7f7f"}))
    labelled = (
        (second, "runners-up", {"color": "#ff7f0e", "size": 9}),
        (top, "selected", {"color": "#d62728", "size": 12, "symbol": "star"}),
    )
    for subset, name, marker in labelled:
        if subset:
            fig.add_trace(
                trace(
                    subset, name, mode="markers+text", text=[str(e["index"]) for e in subset],
                    textposition="top center", marker=marker,
                )
            )  # fmt: skip
    fig.update_layout(
        title=esc(f"Latent model diff at {latents.get('hook_name', '?')}"),
        xaxis_title="mean activation, base model",
        yaxis_title="mean activation, tuned model",
    )
    return fig


def _details(latents: Mapping[str, Any], index: int) -> Mapping[str, Any]:
    details = (latents.get("details") or {}).get(str(index))
    if details is None:
        raise VSFAError(f"latents.json has no details for latent {index}")
    return details


def latent_histogram(latents: Mapping[str, Any], index: int) -> go.Figure:
    """Activation distribution of one latent on the base and the tuned model (overlaid)."""
    histogram = _details(latents, index).get("histogram") or {}
    everything = [float(v) for s in ("base", "tuned") for v in histogram.get(s) or []]
    # one set of bins for both sides: plotly's per-trace autobinning hides a narrow tuned peak
    # far from a wide base spread
    bins = None
    if everything:
        low, high = min(everything), max(everything)
        width = (high - low) / HISTOGRAM_BINS if high > low else max(abs(high), 1.0) / 10
        bins = {"start": low, "end": high + width, "size": width}
    fig = go.Figure()
    for source, color in (("base", "#1f77b4"), ("tuned", "#d62728")):
        values = histogram.get(source) or []
        fig.add_histogram(
            name=f"{source} ({len(values)})",
            x=values,
            xbins=bins,
            autobinx=False if bins else None,
            opacity=0.6,
            marker_color=color,
        )
    fig.update_layout(
        barmode="overlay",
        title=f"Latent {index}: nonzero activations, base vs tuned",
        xaxis_title="activation",
        yaxis_title="tokens",
        showlegend=True,
        # below the plot: a card puts charts side by side, where a legend at the right is
        # covered by the next chart
        legend={"title": {"text": "model (tokens):"}, "orientation": "h", "y": -0.3},
    )
    return fig


def logit_effect(latents: Mapping[str, Any], index: int) -> go.Figure:
    """Tokens the latent's decoder direction promotes and suppresses through the unembedding."""
    effect = _details(latents, index).get("logit_effect") or {}
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.25,
                        subplot_titles=["promoted", "suppressed"])  # fmt: skip
    n = 1
    for col, (key, color) in enumerate((("promoted", "#2ca02c"), ("suppressed", "#d62728")), 1):
        pairs = list(effect.get(key) or [])
        n = max(n, len(pairs))
        fig.add_bar(
            name=f"{key} tokens",
            orientation="h",
            y=[f"{i + 1}. {esc(repr(str(token)))}" for i, (token, _) in enumerate(pairs)],
            x=[float(value) for _, value in pairs],
            marker_color=color,
            row=1,
            col=col,
        )
    # every bar labelled: one tick per token, tall enough to print them all
    fig.update_yaxes(autorange="reversed", tickmode="linear", dtick=1, automargin=True)
    fig.update_xaxes(title_text="logit contribution")
    fig.update_layout(
        title=f"Latent {index}: logit effect (direct path through the unembedding)",
        height=max(360, 180 + 22 * n),
        showlegend=True,
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    red, green, blue = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def steering_curves(steering: Mapping[str, Any]) -> go.Figure:
    """Dose-response: ASR, over-refusal and capability against the steering strength alpha.

    One line per sweep (``add`` on the base model, ``ablate`` on the tuned one ...) with its 95%
    CI as a shaded band; the random-latent control is a grey band (min to max over the random
    latents at each alpha); the diff-of-means direction, when swept, is a dashed line.
    """
    sweeps = steering_sweeps(steering)
    fig = make_subplots(
        rows=1, cols=len(STEER_METRICS), subplot_titles=[METRIC_LABELS[m] for m in STEER_METRICS]
    )
    for s, sweep in enumerate(sweeps):
        color = PALETTE[s % len(PALETTE)]
        mode = esc(sweep.get("mode", "steer"))
        latent = sweep.get("latent")
        label = f"{mode} latent {esc(latent)}" if latent is not None else mode
        curve = sorted(sweep.get("curve") or [], key=lambda point: point["alpha"])
        alphas = [point["alpha"] for point in curve]
        for col, metric in enumerate(STEER_METRICS, start=1):
            first = col == 1
            values = [_pct(metric_value(p.get(metric))) for p in curve]
            lows = [_pct(metric_ci(p.get(metric))[0]) for p in curve]
            highs = [_pct(metric_ci(p.get(metric))[1]) for p in curve]
            if all(v is not None for v in lows + highs) and curve:
                fig.add_scatter(
                    x=alphas + alphas[::-1],
                    y=highs + lows[::-1],
                    fill="toself",
                    fillcolor=_rgba(color, 0.15),
                    line={"width": 0},
                    name=f"{label} 95% CI",
                    legendgroup=f"ci{s}",
                    showlegend=first,
                    hoverinfo="skip",
                    row=1,
                    col=col,
                )
            fig.add_scatter(
                x=alphas,
                y=values,
                mode="lines+markers",
                line={"color": color},
                name=label,
                legendgroup=f"curve{s}",
                showlegend=first,
                row=1,
                col=col,
            )
            _add_control_band(fig, sweep, metric, label, s, col)
            _add_diff_of_means(fig, sweep, metric, label, color, s, col)
    fig.update_yaxes(title_text="%", range=[0, 100])
    fig.update_xaxes(title_text="alpha")
    fig.update_layout(
        title="Steering dose-response (grey band, dotted edge in the sweep's colour: its "
        "random-latent control)",
        showlegend=True,
    )
    return fig


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _add_control_band(
    fig: go.Figure, sweep: Mapping[str, Any], metric: str, label: str, s: int, col: int
) -> None:
    by_alpha: dict[float, list[float]] = {}
    for point in sweep.get("random_control") or []:
        value = metric_value(point.get(metric))
        if value is not None:
            by_alpha.setdefault(float(point["alpha"]), []).append(100.0 * value)
    if not by_alpha:
        return
    alphas = sorted(by_alpha)
    lows = [min(by_alpha[a]) for a in alphas]
    highs = [max(by_alpha[a]) for a in alphas]
    color = PALETTE[s % len(PALETTE)]
    n = max(len(values) for values in by_alpha.values())
    fig.add_scatter(
        x=alphas + alphas[::-1],
        y=highs + lows[::-1],
        fill="toself",
        fillcolor="rgba(127,127,127,0.25)",
        line={"width": 1.5, "color": color, "dash": "dot"},
        mode="lines",
        name=f"{label}: random latents (min-max of {n})",
        legendgroup=f"random{s}",
        showlegend=col == 1,
        hoverinfo="skip",
        row=1,
        col=col,
    )


def _add_diff_of_means(
    fig: go.Figure,
    sweep: Mapping[str, Any],
    metric: str,
    label: str,
    color: str,
    s: int,
    col: int,
) -> None:
    points = sorted(sweep.get("diff_of_means") or [], key=lambda point: point["alpha"])
    if not points:
        return
    fig.add_scatter(
        x=[p["alpha"] for p in points],
        y=[_pct(metric_value(p.get(metric))) for p in points],
        mode="lines",
        line={"color": color, "dash": "dash"},
        name=f"{label}: diff of means",
        legendgroup=f"dom{s}",
        showlegend=col == 1,
        row=1,
        col=col,
    )


SAE_CURVES = (("loss", "loss"), ("fvu", "FVU"), ("l0", "L0"))


def sae_training_curves(metrics: Mapping[str, Any]) -> go.Figure:
    """An SAE's training history: loss, fraction of variance unexplained and L0 per step."""
    history = metrics.get("history") or []
    if not isinstance(history, list):
        raise VSFAError("SAE metrics.json: 'history' must be a list of {step, loss, fvu, l0}")
    fig = make_subplots(rows=1, cols=len(SAE_CURVES), subplot_titles=[t for _, t in SAE_CURVES])
    steps = [point.get("step") for point in history]
    for col, (key, title) in enumerate(SAE_CURVES, start=1):
        fig.add_scatter(
            x=steps,
            y=[point.get(key) for point in history],
            mode="lines",
            name=title,
            row=1,
            col=col,
        )
    fig.update_xaxes(title_text="step")
    summary = ", ".join(
        f"{key} {metrics[key]:.3g}"
        for key in ("fvu", "l0", "dead_fraction", "ce_loss_increase")
        if isinstance(metrics.get(key), int | float)
    )
    fig.update_layout(title=f"SAE training ({summary})" if summary else "SAE training")
    return fig
