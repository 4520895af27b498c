"""HTML fragments for the dashboard: the results table and the latent cards' example lists.

Every piece of model or dataset text goes through :func:`interp.viz.data.esc` here; nothing from
an artifact is ever inserted raw. Image thumbnails are small PNGs embedded as base64 data URIs so
the report opens offline as one file. An example whose image positions were cached gets an
image-patch heatmap: a ``<canvas class="heatmap">`` that the page's script draws from ``data-``
attributes (the image, the patch activations and their grid, the card's scale), and its whole
context coloured by activation on the same scale.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

from interp.viz.data import METRIC_LABELS, RATE_METRICS, esc, format_metric, result_rows

THUMBNAIL_PX = 96
HEATMAP_PX = 128
HEAT_RGB = "214,39,40"
TABLE_METRICS = ("asr", "cs", "over_refusal", "capability")


def results_table_html(data: Any, *, table_id: str = "results-table") -> str:
    """The results table as an HTML ``<table>`` (metrics with 95% CIs), plus per-benchmark ASR."""
    rows = result_rows(data)
    benchmarks: list[str] = []
    for row in rows:
        benchmarks += [b for b in row["asr_by_benchmark"] if b not in benchmarks]
    head = ["Model", "Method", "Seeds"] + [METRIC_LABELS[m] for m in TABLE_METRICS]
    head += [f"ASR {b}" for b in benchmarks]
    lines = [f'<table class="results" id="{esc(table_id)}">', "<thead><tr>"]
    lines += [f"<th>{esc(h)}</th>" for h in head]
    lines.append("</tr></thead><tbody>")
    for row in rows:
        cells = [
            row["model"] or "",
            row["method"],
            "" if row["n_seeds"] is None else row["n_seeds"],
        ]
        cells += [format_metric(row[m], percent=m in RATE_METRICS) for m in TABLE_METRICS]
        cells += [format_metric(row["asr_by_benchmark"].get(b), percent=True) for b in benchmarks]
        lines.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def key_value_table_html(values: Mapping[str, Any], *, css_class: str = "kv") -> str:
    """A two-column table of scalar values (SAE metrics, run settings)."""
    rows = []
    for key, value in values.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        rows.append(f"<tr><th>{esc(key)}</th><td>{esc(value)}</td></tr>")
    return f'<table class="{esc(css_class)}">' + "".join(rows) + "</table>"


@lru_cache(maxsize=512)
def _thumbnail_data_uri(path: str, size: int) -> str | None:
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", optimize=True)
    except (OSError, ValueError, SyntaxError):
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def resolve_image(image: str | None, roots: Sequence[str | os.PathLike]) -> Path | None:
    """An example's image path: absolute, else relative to the first root that has it."""
    if not image:
        return None
    path = Path(image)
    if path.is_absolute():
        return path if path.exists() else None
    for root in roots:
        candidate = Path(root) / path
        if candidate.exists():
            return candidate
    return path if path.exists() else None


def thumbnail_html(
    image: str | None, roots: Sequence[str | os.PathLike] = (), size: int = THUMBNAIL_PX
) -> str:
    """An ``<img>`` with the image embedded as a small PNG, or a note when it cannot be read."""
    if not image:
        return '<div class="thumb none">text only</div>'
    path = resolve_image(image, roots)
    uri = _thumbnail_data_uri(str(path), size) if path is not None else None
    if uri is None:
        return f'<div class="thumb none" title="{esc(image)}">image not found</div>'
    return f'<img class="thumb" src="{uri}" alt="{esc(Path(image).name)}" title="{esc(image)}">'


def highlighted_context_html(example: Mapping[str, Any]) -> str:
    """The example's context with the activating token wrapped in ``<mark>``, all escaped.

    ``token_start``/``token_end`` are character offsets into ``context``; when they do not fit,
    the token is looked up in the context, and failing that shown after it.
    """
    context = str(example.get("context") or "")
    token = str(example.get("token") or "")
    start, end = example.get("token_start"), example.get("token_end")
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= len(context)):
        found = context.rfind(token) if token else -1
        if found < 0:
            return f"{esc(context)} <mark>{esc(token)}</mark>"
        start, end = found, found + len(token)
    return f"{esc(context[:start])}<mark>{esc(context[start:end])}</mark>{esc(context[end:])}"


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else ""


def heatmap_html(
    example: Mapping[str, Any], roots: Sequence[str | os.PathLike], vmax: float
) -> str:
    """The image-patch heatmap of an example (a canvas the page's script draws), with its
    colour scale; the plain thumbnail when no image position was cached."""
    patches = example.get("patches")
    grid = example.get("grid")
    if not patches or not grid:
        return thumbnail_html(example.get("image"), roots)
    path = resolve_image(example.get("image"), roots)
    uri = _thumbnail_data_uri(str(path), HEATMAP_PX) if path is not None else None
    values = json.dumps([float(v) for v in patches])
    peak = max(float(v) for v in patches)
    return (
        '<div class="heat"><canvas class="heatmap" width="'
        f'{HEATMAP_PX}" height="{HEATMAP_PX}" data-values="{esc(values)}" '
        f'data-grid="{esc(json.dumps([int(g) for g in grid]))}" data-max="{float(vmax)!r}"'
        + (f' data-src="{uri}"' if uri else "")
        + f' title="{esc(example.get("image") or "image")}: activation per image patch">'
        "</canvas>"
        f'<div class="scale"><span>0</span><span class="bar"></span>'
        f"<span>{esc(_number(vmax))}</span></div>"
        f'<div class="src">patches {int(grid[0])}x{int(grid[1])}, peak {esc(_number(peak))}'
        + ("" if uri else ", image not found")
        + "</div></div>"
    )


def activation_context_html(example: Mapping[str, Any], vmax: float) -> str:
    """The example's whole cached context, each token shaded by its activation (``tokens``),
    the example's token outlined; empty when the example carries no token activations."""
    tokens = example.get("tokens")
    if not tokens:
        return ""
    at = example.get("token_index")
    spans = []
    for i, (text, value) in enumerate(tokens):
        value = float(value or 0.0)
        shade = min(max(value / vmax, 0.0), 1.0) if vmax > 0 else 0.0
        style = f' style="background:rgba({HEAT_RGB},{0.75 * shade:.3f})"' if shade > 0 else ""
        css = "tok cur" if i == at else "tok"
        spans.append(f'<span class="{css}"{style} title="{value:.3g}">{esc(text)}</span>')
    return '<div class="whole-context">' + "".join(spans) + "</div>"


def top_examples_html(
    examples: Sequence[Mapping[str, Any]],
    *,
    image_roots: Sequence[str | os.PathLike] = (),
    limit: int = 8,
    vmax: float | None = None,
) -> str:
    """Examples of a latent: image-patch heatmap (else thumbnail), source, activation on each
    model, highlighted token, and the whole context coloured by activation (scale ``vmax``,
    default the largest activation listed)."""
    shown = list(examples)[:limit]
    if vmax is None:
        vmax = max([float(e.get("activation") or 0) for e in shown] + [0.0]) or 1.0
    items = []
    for example in shown:
        both = ""
        if example.get("base_activation") is not None or example.get("tuned_activation"):
            both = (
                f" (base {esc(_number(example.get('base_activation')) or 'not cached')}, "
                f"tuned {esc(_number(example.get('tuned_activation')) or 'not cached')})"
            )
        items.append(
            '<li class="example">'
            + heatmap_html(example, image_roots, vmax)
            + '<div class="example-text">'
            + f'<div class="meta"><span class="source {esc(example.get("source"))}">'
            + f"{esc(example.get('source'))}</span> "
            + f"<span>{esc(example.get('prompt_id'))}</span> "
            + f'<span class="act">act {esc(_number(example.get("activation")))}{both}</span></div>'
            + f'<div class="prompt">{esc(example.get("prompt"))}</div>'
            + f'<div class="context">{highlighted_context_html(example)}</div>'
            + activation_context_html(example, vmax)
            + "</div></li>"
        )
    if not items:
        return '<p class="empty">no examples recorded</p>'
    return '<ol class="examples">' + "".join(items) + "</ol>"
