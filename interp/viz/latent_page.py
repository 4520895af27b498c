"""The dashboard's latent page: an index of every listed latent and a card per latent.

The **index** lists each latent of a ``latents.json`` with its change, firing frequency,
effect size and, when a persona analysis scored it (``score.json`` or the file's ``persona``
block), its persona AUROC; a click on a column head sorts by it, a click on a row opens that
latent's card. Every detailed latent has a **card**: the first :data:`OPEN_CARDS` are open, the
rest folded, all in the one HTML file. A card holds the activation histogram (base / tuned),
where the latent sits in the log10 firing-density histogram of every latent, the logit effect,
the nearest latents by decoder cosine, the template positions collapsed into one labelled line
each, the top examples (each with its image-patch heatmap and its whole context coloured by
activation) and examples from activation-quantile bins.

All model text is escaped (:func:`interp.viz.data.esc`); numbers reach the page's script only
through ``data-`` attributes, never as code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from interp.viz import figures
from interp.viz.cards import (
    key_value_table_html,
    top_examples_html,
)
from interp.viz.data import esc, latent_entries, selected_latents
from interp.viz.latent_figures import density_figure

OPEN_CARDS = 6
LATENT_STATS = ("base_mean", "tuned_mean", "delta", "base_freq", "tuned_freq", "p_value",
                "p_adjusted", "effect_size", "harmful_delta", "benign_delta")  # fmt: skip
INDEX_COLUMNS = (
    ("latent", "Latent"),
    ("role", "Role"),
    ("delta", "Delta"),
    ("effect_size", "d_z"),
    ("p_adjusted", "Adj. p"),
    ("base_freq", "Freq base"),
    ("tuned_freq", "Freq tuned"),
    ("persona_auroc", "Persona AUROC"),
)
FigureHTML = Callable[[Any, str], str]

SCRIPT = """
(function(){
function heat(c){var v=JSON.parse(c.dataset.values),g=JSON.parse(c.dataset.grid),
m=parseFloat(c.dataset.max)||1,x=c.getContext('2d'),w=c.width,h=c.height;
function cells(){var cw=w/g[1],ch=h/g[0];for(var i=0;i<v.length;i++){var a=Math.max(0,v[i])/m;
if(a<=0)continue;x.fillStyle='rgba(214,39,40,'+(0.15+0.65*Math.min(a,1))+')';
x.fillRect((i%g[1])*cw,Math.floor(i/g[1])*ch,cw,ch);}
x.strokeStyle='rgba(255,255,255,0.5)';x.lineWidth=0.5;for(var r=1;r<g[0];r++){x.beginPath();
x.moveTo(0,r*ch);x.lineTo(w,r*ch);x.stroke();}for(var k=1;k<g[1];k++){x.beginPath();
x.moveTo(k*cw,0);x.lineTo(k*cw,h);x.stroke();}c.dataset.drawn='1';}
x.fillStyle='#eee';x.fillRect(0,0,w,h);
if(c.dataset.src){var im=new Image();im.onload=function(){x.drawImage(im,0,0,w,h);cells();};
im.onerror=cells;im.src=c.dataset.src;}else{cells();}}
document.querySelectorAll('canvas.heatmap').forEach(heat);
function openCard(id){var d=document.getElementById(id);if(!d)return;if(d.tagName==='DETAILS')
d.open=true;d.scrollIntoView();}
document.querySelectorAll('table.latent-index tbody tr').forEach(function(r){
r.addEventListener('click',function(e){if(e.target.tagName!=='A'){openCard(r.dataset.card);}});});
document.querySelectorAll('a.card-link').forEach(function(a){a.addEventListener('click',
function(){openCard(a.getAttribute('href').slice(1));});});
document.querySelectorAll('table.latent-index th').forEach(function(th,col){
th.addEventListener('click',function(){var t=th.closest('table'),b=t.tBodies[0],
rows=Array.prototype.slice.call(b.rows),up=th.dataset.dir!=='desc';th.dataset.dir=up?'desc':'asc';
rows.sort(function(p,q){var a=parseFloat(p.cells[col].dataset.sort),
z=parseFloat(q.cells[col].dataset.sort);
if(isNaN(a))return 1;if(isNaN(z))return -1;return up?z-a:a-z;});
rows.forEach(function(r){b.appendChild(r);});});});
document.querySelectorAll('details.card').forEach(function(d){d.addEventListener('toggle',
function(){if(d.open&&window.Plotly){d.querySelectorAll('.plotly-graph-div').forEach(
function(g){Plotly.Plots.resize(g);});}});});
})();
"""


def persona_aurocs(
    latents: Mapping[str, Any], scores: Sequence[Mapping[str, Any]] = ()
) -> dict[int, float]:
    """Persona AUROC per latent from ``score.json`` files and the ``persona`` block of a
    ``latents.json`` (candidates named ``latent_<index>``)."""
    found: dict[int, float] = {}
    blocks = [{c.get("name"): c for c in s.get("candidates") or []} for s in scores]
    blocks.append(dict((latents.get("persona") or {}).get("candidates") or {}))
    for block in blocks:
        for name, candidate in block.items():
            value = candidate.get("persona_auroc") if isinstance(candidate, Mapping) else None
            if str(name).startswith("latent_") and isinstance(value, int | float):
                index = str(name)[len("latent_") :]
                if index.isdigit():
                    found.setdefault(int(index), float(value))
    return found


def _cell(value: Any, fmt: str = "{:.3g}") -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f'<td data-sort="">{esc("" if value is None else value)}</td>'
    return f'<td data-sort="{float(value)!r}">{esc(fmt.format(value))}</td>'


def latent_index_html(
    latents: Mapping[str, Any], key: str, aurocs: Mapping[int, float], carded: set[int]
) -> str:
    """The sortable index of every latent listed in ``latents.json``."""
    selected = latents.get("selected") or {}
    chosen = {int(i) for i in selected.get("latents") or []}
    runners = {int(i) for i in selected.get("runners_up") or []}
    head = "".join(f'<th title="sort by {esc(t)}">{esc(t)}</th>' for _, t in INDEX_COLUMNS)
    rows = []
    for entry in latent_entries(latents):
        index = int(entry["index"])
        role = "selected" if index in chosen else "runner-up" if index in runners else ""
        card = f"latent-{key}-{index}"
        link = f'<a class="card-link" href="#{esc(card)}">{index}</a>' if index in carded else index
        cells = [f'<td data-sort="{index}">{link}</td>', f'<td data-sort="">{esc(role)}</td>']
        cells += [_cell(entry.get(name)) for name in ("delta", "effect_size", "p_adjusted")]
        cells += [_cell(entry.get(name), "{:.2%}") for name in ("base_freq", "tuned_freq")]
        cells.append(_cell(aurocs.get(index)))
        rows.append(f'<tr data-card="{esc(card)}">' + "".join(cells) + "</tr>")
    return (
        f'<table class="latent-index results" id="latent-index-{esc(key)}"><thead><tr>{head}'
        "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        '<p class="src">click a column head to sort, a row to open its card</p>'
    )


def _template_html(detail: Mapping[str, Any]) -> str:
    positions = detail.get("template_positions") or []
    if not positions:
        return ""
    items = "".join(
        f'<li><span class="source {esc(p.get("source"))}">{esc(p.get("source"))}</span> '
        f"<code>{esc(p.get('token'))}</code> in <code>{esc(p.get('context'))}</code> fires at "
        f"{esc(_num(p.get('activation')))} in {esc(p.get('n_prompts'))} prompts</li>"
        for p in positions
    )
    dropped = (detail.get("dropped") or {}).get("template_tokens")
    note = f" ({esc(dropped)} rows left out of the examples)" if dropped else ""
    return (
        f'<div class="template"><b>Template positions, collapsed</b>{note}: the chat template '
        f"fires the latent at one value in most prompts<ul>{items}</ul></div>"
    )


def _num(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else ""


def _neighbours_html(detail: Mapping[str, Any], key: str, carded: set[int]) -> str:
    near = detail.get("neighbours") or []
    if not near:
        return ""
    parts = []
    for index, cosine in near:
        label = f"{int(index)} (cos {float(cosine):.2f})"
        if int(index) in carded:
            label = f'<a class="card-link" href="#latent-{esc(key)}-{int(index)}">{esc(label)}</a>'
        parts.append(label)
    return '<p class="neighbours">Nearest by decoder cosine: ' + ", ".join(parts) + "</p>"


def _quantiles_html(detail: Mapping[str, Any], roots: Sequence[Path], vmax: float) -> str:
    bins = detail.get("quantiles") or []
    if not bins:
        return ""
    parts = ["<h4>Examples by activation quantile</h4>"]
    for number, bin_ in enumerate(bins):
        share = float(bin_.get("share") or 0)
        top = 100 * (1 - number * share)
        parts.append(
            f'<div class="quantile"><b>{top - 100 * share:.0f}-{top:.0f}th percentile</b> '
            f"of nonzero activations ({esc(_num(bin_.get('low')))} to "
            f"{esc(_num(bin_.get('high')))}, {esc(bin_.get('n_tokens'))} tokens)"
            + top_examples_html(bin_.get("examples") or [], image_roots=roots, vmax=vmax)
            + "</div>"
        )
    return "".join(parts)


def _scale(detail: Mapping[str, Any]) -> float:
    """One colour scale per card: the largest activation among its examples."""
    values = [0.0]
    for example in detail.get("top_examples") or []:
        values.append(float(example.get("activation") or 0))
        values += [float(v) for v in example.get("patches") or []]
    return max(values) or 1.0


def latent_card(
    latents: Mapping[str, Any],
    index: int,
    entry: Mapping[str, Any],
    roots: Sequence[Path],
    key: str,
    figure_html: FigureHTML,
    *,
    carded: set[int],
    open_: bool,
    auroc: float | None = None,
) -> str:
    """One latent's card (a ``<details>`` element, open or folded)."""
    stats = {k: entry[k] for k in LATENT_STATS if k in entry}
    if auroc is not None:
        stats["persona_auroc"] = auroc
    detail = latents["details"][str(index)]
    significant = ((latents.get("selected") or {}).get("significant") or {}).get(str(index))
    flag = {True: " (significant)", False: " (not significant)"}.get(significant, "")
    card_key = f"{key}-{index}"
    charts = ['<div class="row"><div>']
    charts.append(figure_html(figures.latent_histogram(latents, index), f"hist-{card_key}"))
    charts.append("</div>")
    if latents.get("density"):
        figure = density_figure(latents["density"], detail.get("density") or entry, index)
        charts.append("<div>" + figure_html(figure, f"density-{card_key}") + "</div>")
    if detail.get("logit_effect"):
        charts.append(
            "<div>" + figure_html(figures.logit_effect(latents, index), f"logit-{card_key}")
        )
        charts.append("</div>")
    charts.append("</div>")
    vmax = _scale(detail)
    return (
        f'<details class="card" id="latent-{esc(card_key)}"{" open" if open_ else ""}>'
        f"<summary><h3>Latent {index}{esc(flag)}</h3></summary>"
        + key_value_table_html(stats)
        + _neighbours_html(detail, key, carded)
        + "".join(charts)
        + _template_html(detail)
        + f'<h4>Top-activating examples</h4><p class="src">heatmaps and token colours share '
        f"one scale per card: 0 to {esc(_num(vmax))}</p>"
        + top_examples_html(detail.get("top_examples") or [], image_roots=roots, vmax=vmax)
        + _quantiles_html(detail, roots, vmax)
        + "</details>"
    )


def latent_page(
    latents: Mapping[str, Any],
    path: Path,
    root: Path,
    key: str,
    figure_html: FigureHTML,
    scores: Sequence[Mapping[str, Any]] = (),
) -> list[str]:
    """Index, scatter and every card of one ``latents.json``."""
    aurocs = persona_aurocs(latents, scores)
    details = latents.get("details") or {}
    entries = {int(e["index"]): e for e in latent_entries(latents)}
    order = [i for i in selected_latents(latents) if str(i) in details]
    order += [i for i in entries if str(i) in details and i not in order]
    order += [int(i) for i in details if int(i) not in order]
    carded = set(order)
    parts = [
        latent_index_html(latents, key, aurocs, carded),
        figure_html(figures.latent_scatter(latents), f"latent-scatter-{key}"),
    ]
    roots = [path.parent, root, Path.cwd()]
    for number, index in enumerate(order):
        parts.append(
            latent_card(
                latents, index, entries.get(index, {}), roots, key, figure_html,
                carded=carded, open_=number < OPEN_CARDS, auroc=aurocs.get(index),
            )
        )  # fmt: skip
    return parts
