"""What a sweep's ``steering.json`` says: effects against the controls, and a markdown table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def latent_name(latent: int | Sequence[int]) -> str:
    """Folder-name form: ``7`` or ``7+12+40``."""
    return str(latent) if isinstance(latent, int) else "+".join(map(str, latent))


def _value(metric: Any) -> float | None:
    if isinstance(metric, dict):
        return metric.get("value")
    return metric


def rank_p(value: float | None, randoms: Sequence[float], *, larger: bool = False) -> float | None:
    """``(1 + #random at least as extreme as value) / (1 + n)``: at least as large when
    ``larger``, else at least as small (a drop); ``None`` without a value or controls."""
    if value is None or not randoms:
        return None
    extreme = sum(1 for r in randoms if (r >= value if larger else r <= value))
    return (1 + extreme) / (1 + len(randoms))


def random_rank_p(change: float | None, random_changes: Sequence[float]) -> float | None:
    """One-sided permutation p of the chosen latent's ASR change against the random controls:
    the share of the ``n + 1`` interventions (the chosen one included) whose change is at least
    as large in the chosen one's direction. With 8 random sets the smallest possible is 1/9."""
    if change is None or change == 0:
        return None
    return rank_p(change, random_changes, larger=change > 0)


def summarize_effects(
    curve: list[dict], controls: list[dict], dom_curve: list[dict] | None
) -> dict[str, Any]:
    """ASR / capability change from alpha 0 (or the first alpha) at every alpha, for the chosen
    latent, the random latents (each, their mean, largest absolute change and the chosen one's
    rank among them) and the diff of means."""
    reference = next((p for p in curve if p["alpha"] == 0), curve[0])

    def change(point: dict, metric: str) -> float | None:
        a, b = _value(point.get(metric)), _value(reference.get(metric))
        return None if a is None or b is None else a - b

    rows = []
    for point in curve:
        alpha = point["alpha"]
        random_asr = [change(c, "asr") for c in controls if c["alpha"] == alpha]
        random_asr = [v for v in random_asr if v is not None]
        dom = next((d for d in dom_curve or [] if d["alpha"] == alpha), None)
        asr_change = change(point, "asr")
        rows.append(
            {
                "alpha": alpha,
                "asr_change": asr_change,
                "capability_change": change(point, "capability"),
                "over_refusal_change": change(point, "over_refusal"),
                "random_asr_change_mean": (
                    sum(random_asr) / len(random_asr) if random_asr else None
                ),
                "random_asr_change_max_abs": max(map(abs, random_asr)) if random_asr else None,
                "random_asr_changes": random_asr,
                "random_rank_p": random_rank_p(asr_change, random_asr),
                "diff_of_means_asr_change": None if dom is None else change(dom, "asr"),
            }
        )
    return {"reference_alpha": reference["alpha"], "by_alpha": rows}


def _fmt(metric: Any, percent: bool = True) -> str:
    if not isinstance(metric, dict) or metric.get("value") is None:
        return "-"
    scale = 100 if percent else 1
    digits = 1 if percent else 2
    value, low, high = (metric.get(k) for k in ("value", "ci_low", "ci_high"))
    text = f"{value * scale:.{digits}f}"
    if low is not None and high is not None:
        text += f" [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"
    return text


def render_markdown(result: dict[str, Any]) -> str:
    """The sweep as a table: one row per alpha, controls beside (ASR in %)."""
    lines = [
        f"# Steering: {result['mode']} latent {latent_name(result['latent'])} at "
        f"{result['hook_name']} ({result['positions']} positions)",
        "",
        f"Model `{result['model']}`"
        + (f", adapter `{result['adapter']}`" if result["adapter"] else "")
        + f"; {result['n_items']} items; random latents "
        f"{result['random_latents']}; latent decoder norm {result['latent_norm']:.3g}.",
        "",
        "| alpha | ASR % | over-refusal % | capability % | CS | random ASR % (mean; min-max) | "
        "rank p vs random | diff-of-means ASR % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    effects = {row["alpha"]: row for row in result["effects"]["by_alpha"]}
    for point in result["curve"]:
        alpha = point["alpha"]
        random = [_value(c.get("asr")) for c in result["random_control"] if c["alpha"] == alpha]
        random = [100 * v for v in random if v is not None]
        dom = next((d for d in result["diff_of_means"] or [] if d["alpha"] == alpha), None)
        rank_p = effects.get(alpha, {}).get("random_rank_p")
        lines.append(
            f"| {alpha:g} | {_fmt(point['asr'])} | {_fmt(point['over_refusal'])} | "
            f"{_fmt(point['capability'])} | {_fmt(point['cs'], percent=False)} | "
            + (
                f"{sum(random) / len(random):.1f}; {min(random):.1f}-{max(random):.1f}"
                if random
                else "-"
            )
            + f" | {'-' if rank_p is None else f'{rank_p:.2f}'}"
            + f" | {_fmt(dom['asr']) if dom else '-'} |"
        )
    if result["diff_of_means"]:
        extra = [d for d in result["diff_of_means"] if d["alpha"] not in result["alphas"]]
        if extra:
            lines += ["", "Difference of means at other alphas:", ""]
            lines += [f"* alpha {d['alpha']:g}: ASR {_fmt(d['asr'])}" for d in extra]
    return "\n".join(lines) + "\n"
