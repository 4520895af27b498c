"""Reading the stages' JSON outputs into the shapes the figures draw.

Figures never recompute anything: they read ``metrics.json`` (eval), ``table.json`` (compare),
``results.json`` (demo), ``latents.json`` (diff), ``steering.json`` (steer or demo) and the SAE's
``metrics.json``. This module holds the small amount of normalisation those need (a results row
can come from any of the three result files; a metric can be a ``Metric`` dict or a bare float).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from interp.errors import VSFAError

Metric = Mapping[str, Any]

# Metrics that are rates (shown as percentages); the constructive-safety score is not.
RATE_METRICS = ("asr", "over_refusal", "capability")
METRIC_LABELS = {
    "asr": "ASR",
    "over_refusal": "Over-refusal",
    "capability": "Capability",
    "cs": "CS",
}


def esc(text: Any) -> str:
    """HTML-escape model or dataset text (also for plotly labels: plotly decodes entities)."""
    return html.escape("" if text is None else str(text), quote=True)


def metric_value(metric: Metric | float | int | None) -> float | None:
    """The point value of a ``Metric`` dict or a bare number; ``None`` when absent or NaN."""
    if metric is None:
        return None
    value = metric.get("value") if isinstance(metric, Mapping) else metric
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def metric_ci(metric: Metric | float | None) -> tuple[float | None, float | None]:
    """``(ci_low, ci_high)`` of a ``Metric``; ``(None, None)`` for bare numbers or missing CIs."""
    if not isinstance(metric, Mapping):
        return None, None
    low, high = metric.get("ci_low"), metric.get("ci_high")
    return (
        None if low is None else float(low),
        None if high is None else float(high),
    )


def format_metric(metric: Metric | float | None, *, percent: bool) -> str:
    """``"23.8% [19.1, 28.6]"`` or ``"0.44 [0.40, 0.49]"``; an en dash when absent."""
    value = metric_value(metric)
    if value is None:
        return "\u2013"
    low, high = metric_ci(metric)
    scale, fmt = (100.0, "{:.1f}") if percent else (1.0, "{:.2f}")
    text = fmt.format(value * scale) + ("%" if percent else "")
    if low is not None and high is not None:
        text += f" [{fmt.format(low * scale)}, {fmt.format(high * scale)}]"
    return text


def _seed_count(seeds: Any) -> int | None:
    if seeds is None:
        return None
    if isinstance(seeds, int):
        return seeds
    if isinstance(seeds, Sequence) and not isinstance(seeds, str):
        return len(seeds)
    return None


def result_rows(data: Any) -> list[dict[str, Any]]:
    """Normalise results into rows ``{name, model, method, n_seeds, asr, asr_by_benchmark, cs,
    over_refusal, capability}``.

    Accepts a ``table.json`` (a list of rows, or ``{"rows": [...]}``), the demo's
    ``results.json`` (``{"rows": [...]}`` with ``name``/``n_seeds``) or one eval ``metrics.json``
    (turned into a single row from its ``summary`` and ``benchmarks``).
    """
    if isinstance(data, Mapping) and "summary" in data and "benchmarks" in data:
        return [_row_from_metrics(data)]
    rows = data.get("rows") if isinstance(data, Mapping) else data
    if not isinstance(rows, list):
        raise VSFAError("results: expected a list of rows or an object with a 'rows' list")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise VSFAError(f"results: row {i} is not an object")
        if "summary" in row and "benchmarks" in row:
            out.append(_row_from_metrics(row))
            continue
        method = row.get("method") or row.get("name") or f"row {i}"
        out.append(
            {
                "name": row.get("name") or method,
                "model": row.get("model"),
                "method": method,
                "n_seeds": row.get("n_seeds", _seed_count(row.get("seeds"))),
                "asr": row.get("asr"),
                "asr_by_benchmark": dict(row.get("asr_by_benchmark") or {}),
                "cs": row.get("cs"),
                "over_refusal": row.get("over_refusal"),
                "capability": row.get("capability"),
            }
        )
    return out


def _alpha(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def steer_method(steer: Mapping[str, Any]) -> str:
    """A steered evaluation's row name from its label's ``steer`` entry: the mode, what is
    steered (latents, a random control set or the difference of means) and the alpha."""
    mode = steer.get("mode") or "steer"
    if mode == "none":
        return "unsteered"
    if steer.get("direction"):
        what = str(steer["direction"]).replace("_", " ")
    else:
        latent = steer.get("latent")
        many = isinstance(latent, list | tuple)
        what = f"latents {', '.join(str(i) for i in latent)}" if many else f"latent {latent}"
        if steer.get("control"):
            what = f"{steer['control']} control, {what}"
    return f"steer {mode}: {what}, alpha {_alpha(steer.get('alpha'))}"


def _row_from_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    label = metrics.get("label") or {}
    summary = metrics.get("summary") or {}
    method = label.get("method") or "model"
    if isinstance(label.get("steer"), Mapping):
        method = steer_method(label["steer"])
    if metrics.get("defense") and metrics["defense"] not in str(method):
        method = f"{method} + {metrics['defense']}"
    return {
        "name": method,
        "model": label.get("model") or metrics.get("model"),
        "method": method,
        "n_seeds": 1 if label.get("seed") is not None else None,
        "asr": summary.get("asr"),
        "asr_by_benchmark": {
            bench: entry.get("asr")
            for bench, entry in (metrics.get("benchmarks") or {}).items()
            if isinstance(entry, Mapping) and entry.get("asr") is not None
        },
        "cs": summary.get("cs"),
        "over_refusal": summary.get("over_refusal"),
        "capability": summary.get("capability"),
    }


def steering_sweeps(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The steering sweeps in a ``steering.json``: one sweep (``steer_sweep``'s output) or the
    demo's ``{"sweeps": {"add": sweep, "ablate": sweep}}``. Each returned sweep has a ``mode``."""
    if "curve" in data:
        return [dict(data)]
    sweeps = data.get("sweeps")
    if isinstance(sweeps, Mapping):
        return [{"mode": mode, **sweep} for mode, sweep in sweeps.items() if "curve" in sweep]
    raise VSFAError("steering.json: expected a 'curve' list or a 'sweeps' object of sweeps")


def latent_entries(latents: Mapping[str, Any]) -> list[dict[str, Any]]:
    entries = latents.get("latents")
    if not isinstance(entries, list):
        raise VSFAError("latents.json: expected a 'latents' list")
    return entries


def selected_latents(latents: Mapping[str, Any]) -> list[int]:
    """The selected latents (the persona candidates), then the runners-up, without repeats."""
    selected = latents.get("selected") or {}
    order: list[int] = []
    for index in list(selected.get("latents") or []) + list(selected.get("runners_up") or []):
        if int(index) not in order:
            order.append(int(index))
    return order
