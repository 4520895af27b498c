"""The dashboard's persona page, read from the persona stages' files on disk.

* the **AUROC table per layer** of a ``persona.json`` (``vsfa persona extract``): held-out
  AUROC of the persona vector and the probe, within probe kind (the headline), pooled and per
  kind, the chosen layer marked;
* the **report** of a ``persona_report.json`` (``vsfa persona report``): every method's
  persona AUROC, cosine, shift share, added and removed ASR change and rank p, and the bars;
* the **frontier** of a ``frontier.json`` (:func:`interp.viz.frontier.frontier_figure`);
* the **cue-conditioned activation** of the chosen candidates (:func:`cue_figure`): each
  held-out context's value under the vigilant and the loose cue, per probe kind.

All model and dataset text is escaped; plotly's JSON escapes the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from interp.viz.data import esc
from interp.viz.frontier import frontier_figure

PERSONA_FILES = ("persona.json", "persona_report.json", "frontier.json")
"""The files the persona page reads."""
CUE_COLORS = {"vigilant": "#1f77b4", "loose": "#d62728"}
Found = list[tuple[Path, dict[str, Any]]]


def persona_kind(name: str, data: Any) -> str | None:
    """Which persona file ``data`` (read from a file called ``name``) is, or None."""
    if not isinstance(data, Mapping):
        return None
    if name == "persona.json" and "auroc" in data and "chosen_hook" in data:
        return "persona"
    if name == "persona_report.json" and "methods" in data and "selection_items" in data:
        return "report"
    if name == "frontier.json" and "methods" in data and "eval_items" in data:
        return "frontier"
    return None


def _cell(value: Any, digits: int = 3) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return esc(value)


def _points(value: float | None) -> str:
    return "&ndash;" if value is None else f"{100 * value:+.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], table_id: str) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return (f'<table class="results" id="{esc(table_id)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")  # fmt: skip


def auroc_table_html(auroc: Mapping[str, Mapping[str, Any]], chosen: str | None, key: str) -> str:
    """The held-out AUROC per layer (``persona.json``'s ``auroc``), the chosen layer marked."""
    rows = []
    for hook, scores in auroc.items():
        kinds = scores.get("persona_by_kind") or {}
        rows.append([
            esc(hook) + (" <b>(chosen)</b>" if hook == chosen else ""),
            _cell(scores.get("persona")), _cell(scores.get("persona_pooled")),
            _cell(scores.get("probe")), _cell(scores.get("probe_pooled")),
            esc(", ".join(f"{k} {v:.3f}" for k, v in kinds.items())) or "&ndash;",
        ])  # fmt: skip
    header = ("hook", "persona vector (within kind)", "pooled", "probe (within kind)",
              "pooled", "persona vector by kind")  # fmt: skip
    return _table(header, rows, f"auroc-{key}")


def methods_table_html(report: Mapping[str, Any], key: str) -> str:
    """Each method of a ``persona_report.json``: ground truth, attribution and causal effect."""
    rows = []
    for name, m in (report.get("methods") or {}).items():
        rows.append([
            esc(name), _cell(m.get("persona_auroc")), _cell(m.get("cosine_persona")),
            _cell(m.get("vsfa_shift_share"), 4), _points(m.get("add_asr_change_at_cap5")),
            _cell(m.get("random_rank_p")), _points(m.get("ablate_asr_change")),
            _points(m.get("ablate_capability_change")), _cell(m.get("ablate_random_rank_p")),
        ])  # fmt: skip
    header = ("method", "persona AUROC", "cosine with persona vector", "VSFA shift share",
              "add: ASR change at cap. cost 5 (pts)", "rank p", "remove: ASR change (pts)",
              "remove: capability change (pts)", "rank p")  # fmt: skip
    return _table(header, rows, f"methods-{key}")


def bars_html(report: Mapping[str, Any]) -> str:
    """The bars of the report, one line each, met or not."""
    items = []
    for name, bar in (report.get("bars") or {}).items():
        if "met" not in bar:
            continue
        state = {True: "met", False: "not met", None: "not measured"}[bar["met"]]
        value = bar.get("value")
        shown = f"{_points(value)} points" if bar.get("unit") == "ASR change" else _cell(value)
        if bar.get("rank_p") is not None:
            shown += f", rank p {bar['rank_p']:.3f}"
        items.append(f"<li>{esc(name.replace('_', ' '))}: {shown} (<b>{state}</b>)</li>")
    return f'<ul class="findings">{"".join(items)}</ul>' if items else ""


def cue_figure(cue: Mapping[str, Mapping[str, Any]], title: str | None = None) -> go.Figure:
    """Each candidate's value on the held-out contexts (``{candidate: {"hook", "rows": [{id,
    cue, probe_kind, value}]}}``): a box per cue and probe kind, one panel per candidate."""
    from plotly.subplots import make_subplots

    names = list(cue)
    fig = make_subplots(rows=1, cols=max(len(names), 1), subplot_titles=[
        f"{esc(name)} ({esc(cue[name].get('hook', '?'))})" for name in names
    ])  # fmt: skip
    for col, name in enumerate(names, 1):
        rows = cue[name].get("rows") or []
        for label, color in CUE_COLORS.items():
            chosen = [r for r in rows if r.get("cue") == label]
            fig.add_box(
                x=[esc(r.get("probe_kind")) for r in chosen], y=[r["value"] for r in chosen],
                text=[esc(r.get("id")) for r in chosen], name=f"{label} cue",
                marker_color=color, boxpoints="all", jitter=0.4, pointpos=0,
                legendgroup=label, showlegend=col == 1, row=1, col=col,
                hovertemplate="%{text}<br>%{y:.3f}<extra></extra>",
            )  # fmt: skip
    fig.update_layout(
        boxmode="group", title=title or "Cue-conditioned activation on held-out contexts "
        "(decision position, base model)", yaxis_title="projection / activation",
    )  # fmt: skip
    return fig


def _projection_cue(persona: Mapping[str, Any]) -> dict[str, Any] | None:
    rows = persona.get("heldout_projection")
    if not rows:
        return None
    return {"persona-vector": {"hook": persona.get("chosen_hook"), "rows": rows}}


def persona_section(
    found: Mapping[str, Found], root: Path, figure_html: Any, source_html: Any
) -> str:
    """The persona page: ``found`` maps ``persona``/``report``/``frontier`` to the files of each
    kind; ``figure_html(fig, div_id)`` and ``source_html(path, root)`` are the dashboard's."""
    reports, personas, frontiers = (found.get(k) or [] for k in ("report", "persona", "frontier"))
    if not (reports or personas or frontiers):
        return ""
    parts = ['<h2 id="persona">Persona</h2>']
    for i, (path, report) in enumerate(reports):
        n_sel, n_eval = len(report.get("selection_items") or []), len(report["eval_items"])
        parts.append(
            f"<p>{n_sel} selection items, {n_eval} evaluation items (disjoint); fine-tuning "
            f"seeds {esc(report.get('seeds'))}; {esc(report.get('n_random'))} random controls "
            "per method.</p>"
        )
        parts += [source_html(path, root), bars_html(report), methods_table_html(report, f"r{i}")]
        if report.get("cue_activation"):
            parts.append(figure_html(cue_figure(report["cue_activation"]), f"cue-r{i}"))
    for i, (path, persona) in enumerate(personas):
        parts.append(f"<h3>AUROC per layer: {esc(path.parent.name)}</h3>")
        parts += [source_html(path, root),
                  auroc_table_html(persona["auroc"], persona.get("chosen_hook"), f"p{i}"),
                  f'<p class="src">{esc(persona.get("auroc_rule") or "")}</p>']  # fmt: skip
        cue = None if reports else _projection_cue(persona)
        if cue:
            parts.append(figure_html(cue_figure(cue), f"cue-p{i}"))
    for i, (path, frontier) in enumerate(frontiers):
        parts += [source_html(path, root), figure_html(frontier_figure(frontier), f"frontier-{i}")]
    return "\n".join(p for p in parts if p)
