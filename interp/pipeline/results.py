"""What the demo reports: ``results.json`` rows, the latents it steers, the HTML report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interp.errors import VSFAError

# (label method, display name); the order is the table's.
METHODS: tuple[tuple[str, str], ...] = (
    ("none", "No defense"),
    ("adashield", "AdaShield"),
    ("vlguard", "VLGuard"),
    ("control", "Benign control"),
    ("vsfa", "VSFA"),
)


def results_json(rows: Sequence[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """``results.json``: one row per method from :func:`interp.eval.table.compare` rows: name,
    ASR, the three-way rates (refusal and other over harmful items, help over benign requests;
    null for a judge that cannot tell), over-refusal, capability, CS, each with its clipped,
    hierarchical 95% interval (``interval``: what it resampled), the number of seeds, and the
    paired differences against the ``none`` and ``control`` rows."""
    from interp.eval.intervals import INTERVALS

    names = dict(METHODS)
    out_rows = []
    for row in rows:
        seeds = [s for s in row.get("seeds") or [] if s is not None]
        out_rows.append(
            {
                "name": names.get(row["method"], row["method"]),
                "method": row["method"],
                "model": row.get("model"),
                "asr": row.get("asr"),
                "asr_by_benchmark": row.get("asr_by_benchmark") or {},
                "refusal": row.get("refusal"),
                "other": row.get("other"),
                "help": row.get("help"),
                "other_benign": row.get("other_benign"),
                "over_refusal": row.get("over_refusal"),
                "capability": row.get("capability"),
                "cs": row.get("cs"),
                "n_seeds": max(len(seeds), 1),
                "seeds": seeds,
                "interval": row.get("interval"),
                "differences": row.get("differences") or {},
            }
        )
    return {"rows": out_rows, "settings": settings, "intervals": INTERVALS}


def pick_latent(latents: dict[str, Any]) -> tuple[int, bool]:
    """The latent to look at: the top selected one, else (flagged) the top runner-up."""
    chosen, significant = pick_latents(latents)
    return (chosen if isinstance(chosen, int) else chosen[0]), significant


def pick_latents(latents: dict[str, Any]) -> tuple[int | list[int], bool]:
    """What to steer: the selected latent, or the selected set when the diff picked several;
    else (flagged) the top runner-up."""
    from interp.sae.latents import as_latents

    selected = latents.get("selected") or {}
    if selected.get("latents"):
        return as_latents(selected["latents"]), True
    if selected.get("runners_up"):
        return int(selected["runners_up"][0]), False
    raise VSFAError("latents.json selected no latent and lists no runner-up to steer with")


def latent_scale(latents: dict[str, Any], latent: int | list[int]) -> float:
    """The latent's largest activation on the tuned model (from the diff's histogram; for a set,
    the largest of its latents'), the unit of the ``add`` alphas: alpha 1 adds the latent as
    strongly as VSFA's model ever fires it."""
    values = []
    for index in [latent] if isinstance(latent, int) else latent:
        details = (latents.get("details") or {}).get(str(index)) or {}
        histogram = details.get("histogram") or {}
        values += [float(v) for v in histogram.get("tuned") or histogram.get("base") or []]
    return max(values) if values else 1.0


def frontier_headlines(frontier: dict[str, Any], persona: dict[str, Any]) -> list[str]:
    """Plain-text lines of the persona frontier (``frontier.json``): per method the ASR change
    at the capability cost bound with its alpha and rank p among the random sets; then the
    persona vector's chosen layer and its held-out AUROC (``persona.json``)."""
    cap = 100 * float(frontier.get("capability_cost", 0.05))
    lines = []
    for name, method in frontier["methods"].items():
        top = method["headline"]
        change, alpha = 100 * top["asr_change_at_cap5"], top["alpha"]
        text = (f"frontier {name} ({method['kind']}): ASR {change:+.1f} points at capability "
                f"cost <= {cap:g} points (alpha {alpha:.3g})")  # fmt: skip
        controls = method.get("controls") or {}
        if method.get("random_rank_p") is not None:
            text += f", rank p {method['random_rank_p']:.2f} among {controls.get('n')} random sets"
        else:
            text += ", no random control"
        lines.append(text)
    chosen = persona["chosen_hook"]
    auroc = persona["auroc"][chosen]
    lines.append(f"persona vector: chosen layer {chosen}, held-out AUROC {auroc['persona']:.3f} "
                 f"(probe {auroc['probe']:.3f})")  # fmt: skip
    return lines


def write_report(out: Path, title: str) -> Path:
    """``report.html`` of the demo folder (:func:`interp.viz.dashboard.write_dashboard`)."""
    from interp.viz.dashboard import write_dashboard

    return write_dashboard(out, out / "report.html", title=title)
