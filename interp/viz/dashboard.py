"""One standalone HTML report of a run: results table, latent cards, steering and SAE curves.

``write_dashboard(run_dir, out)`` finds the stages' JSON outputs under ``run_dir`` (by file name
and shape, see :func:`collect_run`), draws the figures of :mod:`interp.viz.figures` and writes
one HTML file with plotly.js embedded inline, so it opens without a network. All model and
dataset text is escaped (:func:`interp.viz.data.esc`); plotly's own JSON escapes ``<``, ``>``
and ``/``, so text inside figures cannot close the script element either.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from interp.artifacts import read_json, write_text_atomic
from interp.errors import VSFAError
from interp.viz import figures
from interp.viz.cards import key_value_table_html, results_table_html
from interp.viz.data import esc, metric_value, result_rows, steering_sweeps
from interp.viz.latent_page import SCRIPT, latent_page
from interp.viz.persona import PERSONA_FILES, persona_kind, persona_section

# Folders that hold bulk data, never JSON the dashboard draws.
SKIP_DIRS = {"shards", "adapter", "model", "images", "__pycache__", "checkpoints", "points"}
MAX_JSON_BYTES = 64 << 20


@dataclass
class RunArtifacts:
    """The JSON outputs found under one run folder, each as ``(path, data)``."""

    root: Path
    results: list[tuple[Path, Any]] = field(default_factory=list)
    evals: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    latents: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    steering: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    sae: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    persona: dict[str, list[tuple[Path, dict[str, Any]]]] = field(default_factory=dict)
    """persona.json, persona_report.json and frontier.json by kind (:mod:`interp.viz.persona`)"""
    scores: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    """persona ``score.json`` files: the persona AUROC of single latents for the latent index"""

    def is_empty(self) -> bool:
        return not (
            self.results or self.evals or self.latents or self.steering or self.sae or self.persona
        )


def _depth(path: Path, root: Path) -> int:
    return len(path.relative_to(root).parts)


def collect_run(run_dir: str | os.PathLike) -> RunArtifacts:
    """Find results (``results.json``/``table.json``), eval and SAE ``metrics.json``,
    ``latents.json`` and ``steering.json`` under ``run_dir``.

    Results and steering files are kept at their shallowest depth only: the demo writes a
    combined ``steering.json`` at the top and each sweep's own file below it.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise VSFAError(f"--run {root} does not exist or is not a folder")
    found = RunArtifacts(root=root)
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            if name not in {
                "results.json",
                "table.json",
                "metrics.json",
                "latents.json",
                "steering.json",
                "score.json",
                *PERSONA_FILES,
            }:
                continue
            path = Path(folder) / name
            if path.stat().st_size > MAX_JSON_BYTES:
                continue
            data = read_json(path)
            _classify(found, path, name, data)
    found.results = _shallowest(found.results, root)
    # the demo's results.json and eval's table.json beside it hold the same rows: show one
    with_results = {path.parent for path, _ in found.results if path.name == "results.json"}
    found.results = [
        (path, data)
        for path, data in found.results
        if not (path.name == "table.json" and path.parent in with_results)
    ]
    found.steering = _shallowest(found.steering, root)
    return found


def _classify(found: RunArtifacts, path: Path, name: str, data: Any) -> None:
    kind = persona_kind(name, data)
    if kind:
        found.persona.setdefault(kind, []).append((path, dict(data)))
    elif name in ("results.json", "table.json"):
        if isinstance(data, list) or (isinstance(data, Mapping) and "rows" in data):
            found.results.append((path, data))
    elif name == "metrics.json" and isinstance(data, Mapping):
        if "summary" in data and "benchmarks" in data:
            found.evals.append((path, dict(data)))
        elif "history" in data or "fvu" in data:
            found.sae.append((path, dict(data)))
    elif name == "score.json" and isinstance(data, Mapping) and "candidates" in data:
        found.scores.append((path, dict(data)))
    elif name == "latents.json" and isinstance(data, Mapping) and "latents" in data:
        found.latents.append((path, dict(data)))
    elif (
        name == "steering.json"
        and isinstance(data, Mapping)
        and ("curve" in data or "sweeps" in data)
    ):
        found.steering.append((path, dict(data)))


def _shallowest(items: list[tuple[Path, Any]], root: Path) -> list[tuple[Path, Any]]:
    if not items:
        return items
    depth = min(_depth(path, root) for path, _ in items)
    return [(path, data) for path, data in items if _depth(path, root) == depth]


# ---- rendering ------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:1rem 2rem;color:#222}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
.src{color:#777;font-size:.8rem}
table.results,table.kv{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
table.results th,table.results td,table.kv th,table.kv td{border:1px solid #ccc;
padding:.25rem .5rem;text-align:left}
table.results thead th{background:#e8eef7}
.card{border:1px solid #ccc;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}
.card h3{margin:.3rem 0}.row{display:flex;flex-wrap:wrap;gap:1rem}.row>div{flex:1 1 420px;
min-width:0}
ol.examples{list-style:none;padding:0}li.example{display:flex;gap:.7rem;margin:.4rem 0;
border-bottom:1px dotted #ddd;padding-bottom:.4rem}
img.thumb{width:96px;height:96px;object-fit:contain;background:#f3f3f3;flex:none}
div.thumb.none{width:96px;height:96px;flex:none;background:#f3f3f3;color:#999;font-size:.75rem;
display:flex;align-items:center;justify-content:center}
.example-text{font-size:.85rem;white-space:pre-wrap;word-break:break-word}
.meta{color:#555}.source.base{color:#1f77b4}.source.tuned{color:#d62728}
.prompt{color:#444;margin:.15rem 0}.context{font-family:ui-monospace,monospace}
mark{background:#ffe066;padding:0 1px}ul.findings li{margin:.2rem 0}
details.card>summary{cursor:pointer}details.card>summary h3{display:inline}
table.latent-index tbody tr{cursor:pointer}table.latent-index tbody tr:hover{background:#f5f8fc}
table.latent-index th{cursor:pointer}
.heat{flex:none;width:128px;font-size:.7rem}canvas.heatmap{width:128px;height:128px;display:block}
.scale{display:flex;align-items:center;gap:3px}.scale .bar{flex:1;height:8px;
background:linear-gradient(to right,rgba(214,39,40,.15),rgba(214,39,40,.8))}
.whole-context{font-family:ui-monospace,monospace;margin-top:.2rem;line-height:1.6}
.tok{white-space:pre-wrap}.tok.cur{outline:2px solid #333}
.template{background:#fafafa;border:1px dashed #bbb;padding:.3rem .6rem;margin:.5rem 0;
font-size:.85rem}.quantile{margin:.5rem 0}.warning{background:#fde2e1;border:2px solid #d62728;
padding:.4rem .8rem;font-weight:600}
"""


def _figure_html(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )


def _source(path: Path, root: Path) -> str:
    return f'<p class="src">from {esc(path.relative_to(root))}</p>'


def _points(change: float) -> str:
    return f"{100 * change:+.1f} points"


def steering_findings(steering: Mapping[str, Any]) -> list[str]:
    """Plain-text findings, one line per sweep and steered alpha: the ASR change from the
    sweep's weakest alpha (0: no steering), the random-latent control's changes at that alpha
    (range, and the chosen latent's rank p among them), and the capability change. The whole
    dose-response is listed because the strongest alpha is often past the point where random
    directions do as much and capability breaks. Numbers come from the file, nothing is
    recomputed but differences."""
    lines = []
    for sweep in steering_sweeps(steering):
        curve = sorted(sweep.get("curve") or [], key=lambda p: abs(float(p["alpha"])))
        if not curve:
            continue
        start = curve[0]
        asr0, capability0 = metric_value(start.get("asr")), metric_value(start.get("capability"))
        if asr0 is None:
            continue
        random_asr: dict[float, list[float]] = {}
        for point in sweep.get("random_control") or []:
            value = metric_value(point.get("asr"))
            if value is not None:
                random_asr.setdefault(float(point["alpha"]), []).append(value)
        rank_p = {
            float(row["alpha"]): row.get("random_rank_p")
            for row in (sweep.get("effects") or {}).get("by_alpha") or []
        }
        mode, hook = sweep.get("mode", "steer"), sweep.get("hook_name", "?")
        head = f"{mode} latent {sweep.get('latent')} ({hook})"
        for point in curve[1:]:
            alpha, asr = float(point["alpha"]), metric_value(point.get("asr"))
            if asr is None:
                continue
            text = (
                f"{head} alpha {alpha:g}: ASR {100 * asr0:.1f}% -> {100 * asr:.1f}% "
                f"({_points(asr - asr0)} vs alpha {float(start['alpha']):g})"
            )
            controls = random_asr.get(alpha)
            if controls:
                text += (
                    f"; random latents {_points(min(controls) - asr0)} to "
                    f"{_points(max(controls) - asr0)} (n={len(controls)})"
                )
                if rank_p.get(alpha) is not None:
                    text += f", rank p {rank_p[alpha]:.2f}"
            capability = metric_value(point.get("capability"))
            if capability is not None and capability0 is not None:
                text += f"; capability {_points(capability - capability0)}"
            lines.append(text)
    return lines


def _section(
    title: str, items: Sequence[tuple[Path, Any]], pieces: Callable[[int, Path, Any], list[str]]
) -> str:
    """An ``<h2>`` section holding ``pieces(i, path, data)`` of each artifact; empty without any."""
    if not items:
        return ""
    parts = [f"<h2>{title}</h2>"]
    for i, (path, data) in enumerate(items):
        parts.extend(pieces(i, path, data))
    return "\n".join(parts)


def _results_section(art: RunArtifacts) -> str:
    # the results files, else every eval's metrics.json as one table
    evals = [(art.root, [data for _, data in art.evals])] if art.evals else []
    sources = art.results or evals

    def pieces(i: int, path: Path, data: Any) -> list[str]:
        rows = result_rows(data)
        if not rows:
            return []
        parts = [results_table_html(rows, table_id="results-table" if i == 0 else f"results-{i}")]
        if path != art.root:
            parts.append(_source(path, art.root))
        if any(row["asr_by_benchmark"] or row["asr"] for row in rows):
            parts.append(_figure_html(figures.asr_bars(rows), f"asr-bars-{i}"))
        return parts

    return _section("Results", sources, pieces)


def _latent_section(art: RunArtifacts) -> str:
    scores = [data for _, data in art.scores]

    def pieces(i: int, path: Path, latents: dict[str, Any]) -> list[str]:
        chosen = (latents.get("selected") or {}).get("latents") or []
        summary = (
            f"SAE {latents.get('sae', '?')} at {latents.get('hook_name', '?')}: "
            f"{latents.get('d_sae', '?')} latents, {latents.get('n_prompts', '?')} prompts, "
            f"{latents.get('n_tokens', '?')} tokens. Selected: "
            f"{', '.join(str(c) for c in chosen) or 'none'} "
            f"(rule: {(latents.get('selected') or {}).get('rule', '?')})."
        )
        parts = [f"<p>{esc(summary)}</p>"]
        if latents.get("significance"):
            parts.append(f'<p class="src">significant: {esc(latents["significance"])}</p>')
        parts.append(_source(path, art.root))
        return parts + latent_page(latents, path, art.root, str(i), _figure_html, scores)

    return _section("Latents", art.latents, pieces)


def _steering_section(art: RunArtifacts) -> str:
    def pieces(i: int, path: Path, steering: dict[str, Any]) -> list[str]:
        findings = "".join(f"<li>{esc(f)}</li>" for f in steering_findings(steering))
        parts = [f'<ul class="findings">{findings}</ul>'] if findings else []
        parts.append(_source(path, art.root))
        parts.append(_figure_html(figures.steering_curves(steering), f"steering-{i}"))
        return parts

    return _section("Steering", art.steering, pieces)


def _sae_section(art: RunArtifacts) -> str:
    def pieces(i: int, path: Path, metrics: dict[str, Any]) -> list[str]:
        scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float | str)}
        warnings = metrics.get("warnings")
        if warnings is None:  # metrics written before the floors were recorded
            from interp.sae.metrics import quality_warnings

            warnings = quality_warnings(metrics)
        parts = [f'<p class="warning">{esc(line)}</p>' for line in warnings]
        parts.append(_source(path, art.root) + key_value_table_html(scalars))
        if metrics.get("history"):
            parts.append(_figure_html(figures.sae_training_curves(metrics), f"sae-{i}"))
        return parts

    return _section("SAE training", art.sae, pieces)


def _monitor_section(art: RunArtifacts) -> str:
    from interp.monitor.figure import MONITOR_FILE, monitor_figure, monitor_runs

    runs = [(run / MONITOR_FILE, run) for run in monitor_runs(art.root)]
    return _section("Persona during training", runs, lambda i, path, run: [
        _source(path, art.root), _figure_html(monitor_figure(run), f"monitor-{i}")])  # fmt: skip


def render_dashboard(art: RunArtifacts, *, title: str | None = None) -> str:
    """The full standalone HTML document for the artifacts of one run."""
    from plotly.offline import get_plotlyjs

    title = title or f"VSFA report: {art.root.name}"
    body = [
        f"<h1>{esc(title)}</h1>",
        f'<p class="src">run {esc(art.root)} &middot; generated '
        f"{esc(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>",
        _results_section(art),
        _latent_section(art),
        _steering_section(art),
        persona_section(art.persona, art.root, _figure_html, _source),
        _monitor_section(art),
        _sae_section(art),
        f"<script>{SCRIPT}</script>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script>'
        "</head><body>\n" + "\n".join(b for b in body if b) + "\n</body></html>\n"
    )


def write_dashboard(
    run_dir: str | os.PathLike, out: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Collect the run's artifacts and write the standalone report (atomically)."""
    art = collect_run(run_dir)
    if art.is_empty() and not _monitor_section(art):
        raise VSFAError(
            f"--run {run_dir} holds no results.json, table.json, metrics.json, latents.json, "
            "steering.json or persona file (persona.json, persona_report.json, frontier.json) "
            "to show"
        )
    return write_text_atomic(out, render_dashboard(art, title=title))
