"""Dose-response sweep of one steering intervention through the eval harness, with controls.

The steered unit is one SAE latent or a set of them (edited together, see
:func:`interp.steer.interventions.latent_edit`).

For each alpha the model is evaluated (``interp.eval.run.evaluate``: generation with the
steering hook entered around every batch, judging, metrics with bootstrap CIs). Controls:

* **random latents** (``n_random``, seeded): the same intervention on other latents (sets of
  the same size for a set); for ``add`` their decoder direction is rescaled to the chosen one's
  norm, so only the direction differs.
* **difference of means** (tuned minus base residual mean, from ``vsfa latents diff``): ``add``
  adds ``alpha *`` it, rescaled to the latent's decoder norm unless ``dom_alphas`` are given
  (then the raw difference: alpha 1 adds exactly tuned-minus-base); ``ablate`` projects it out
  (``alpha`` = fraction removed); no baseline for ``clamp``.

What alpha means per mode: ``add``: ``h + alpha * W_dec[i]`` (the latent's activation units);
``ablate``: remove ``alpha *`` the latent's own contribution (1 = full ablation, 2 = reversed);
``clamp``: set the latent's activation to ``alpha``.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from interp.artifacts import write_json_atomic, write_text_atomic
from interp.errors import VSFAError
from interp.steer.interventions import (
    Latents,
    add_direction,
    check_latents,
    check_positions,
    check_sae_fits,
    clamp_latent,
    latent_direction,
    project_out,
    sae_hook_name,
)
from interp.steer.interventions import ablate_latent as _ablate

MODES = ("add", "ablate", "clamp")
CURVE_METRICS = ("asr", "over_refusal", "capability", "cs")


def parse_alphas(text: str | Sequence[float]) -> list[float]:
    """``"0,2,4,8"`` (or a list) -> finite floats; a clear error for anything else."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    alphas = []
    for part in parts:
        try:
            value = float(part.strip() if isinstance(part, str) else part)
        except (TypeError, ValueError):
            raise VSFAError(f"--alphas: {part!r} is not a number (expected e.g. 0,2,4,8)") from None
        if not math.isfinite(value):
            raise VSFAError(f"--alphas: {part!r} is not a finite number")
        alphas.append(value)
    if not alphas:
        raise VSFAError("--alphas: give at least one value, e.g. 0,2,4,8")
    return list(dict.fromkeys(alphas))


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise VSFAError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
    return mode


def latent_factory(
    vlm: Any, sae: Any, latent: Latents, mode: str, alpha: float, *, hook_name: str,
    positions: str = "all", norm: float | None = None,
) -> Callable[[], Any]:  # fmt: skip
    """A zero-argument factory of the steering context manager (what ``evaluate`` takes).

    ``norm`` rescales the added decoder direction (random-latent controls match the chosen one).
    """
    if mode == "add":
        direction = latent_direction(sae, latent)
        if norm is not None:
            direction = direction * (norm / direction.norm().clamp(min=1e-12))
        return functools.partial(add_direction, vlm, hook_name, direction, alpha, positions)
    if mode == "ablate":
        return functools.partial(_ablate, vlm, sae, latent, alpha, positions, hook_name)
    return functools.partial(clamp_latent, vlm, sae, latent, alpha, positions, hook_name)


def direction_factory(
    vlm: Any, direction: torch.Tensor, mode: str, alpha: float, *, hook_name: str,
    positions: str = "all",
) -> Callable[[], Any] | None:  # fmt: skip
    """Difference-of-means baseline: add it (``add``) or project it out (``ablate``)."""
    if mode == "add":
        return functools.partial(add_direction, vlm, hook_name, direction, alpha, positions)
    if mode == "ablate":
        return functools.partial(project_out, vlm, hook_name, direction, alpha, positions)
    return None


def _is_identity(mode: str, alpha: float) -> bool:
    return mode in ("add", "ablate") and alpha == 0


def _point(alpha: float, metrics: dict[str, Any], **extra: Any) -> dict[str, Any]:
    summary = metrics.get("summary") or {}
    return {"alpha": alpha, **extra, **{name: summary.get(name) for name in CURVE_METRICS}}


def pick_random_latents(
    sae: Any,
    latent: Latents,
    n: int,
    seed: int,
    candidates: Sequence[int] | None = None,
) -> list[int] | list[list[int]]:
    """``n`` other latents, seeded; for a set of ``k`` latents, ``n`` disjoint sets of ``k``.
    Drawn from ``candidates`` when given (e.g. live latents)."""
    chosen = check_latents(sae, latent)
    size = 1 if isinstance(latent, int) else len(chosen)
    pool = [int(i) for i in (candidates or range(int(sae.cfg.d_sae))) if int(i) not in chosen]
    if n * size > len(pool):
        raise VSFAError(f"--n-random {n}: only {len(pool)} other latents to draw from")
    g = torch.Generator().manual_seed(seed)
    order = [pool[i] for i in torch.randperm(len(pool), generator=g)[: n * size].tolist()]
    if isinstance(latent, int):
        return order
    return [order[i * size : (i + 1) * size] for i in range(n)]


def _name(latent: Latents) -> str:
    """Folder-name form: ``7`` or ``7+12+40``."""
    return str(latent) if isinstance(latent, int) else "+".join(map(str, latent))


def steer_sweep(
    vlm: Any,
    items: Sequence[Any],
    sae: Any,
    latent: Latents,
    mode: str,
    alphas: Sequence[float] | str,
    judge: Any,
    out_dir: str | os.PathLike,
    n_random: int = 3,
    *,
    hook_name: str | None = None,
    positions: str = "all",
    generation: Any = None,
    diff_of_means: torch.Tensor | str | os.PathLike | None = None,
    dom_alphas: Sequence[float] | str | None = None,
    random_latents: Sequence[Latents] | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    label: dict[str, Any] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Evaluate ``mode`` steering of ``latent`` (an index or a list of them, steered together)
    at every alpha, with controls; write ``steering.json`` and ``steering.md`` into ``out_dir``
    and return the JSON dict.

    Every point is one ``evaluate`` folder under ``out_dir`` (resumable: finished points are
    read back, not regenerated).
    """
    from interp.eval.run import evaluate

    check_mode(mode)
    check_positions(positions)
    alphas = parse_alphas(alphas)
    chosen = check_latents(sae, latent)
    latent = latent if isinstance(latent, int) else chosen
    hook = sae_hook_name(sae, hook_name)
    check_sae_fits(vlm, sae, hook)
    if n_random < 0:
        raise VSFAError("--n-random must be >= 0")
    out = Path(out_dir)
    base_label = {"method": f"steer-{mode}", **(label or {})}

    def run(name: str, factory: Callable[[], Any] | None, steer: dict[str, Any]) -> dict:
        hooks = [factory] if factory is not None else []
        return evaluate(
            vlm, items, out / name, judge=judge, generation=generation, hooks=hooks,
            label={**base_label, "steer": steer}, n_boot=n_boot, quiet=quiet,
        )  # fmt: skip

    common = {"mode": mode, "hook": hook, "positions": positions}
    identity: dict[str, Any] | None = None

    def point_metrics(alpha: float, factory: Callable[[], Any], name: str, steer: dict) -> dict:
        nonlocal identity
        if _is_identity(mode, alpha):  # alpha 0 is no steering: evaluate once, share it
            if identity is None:
                identity = run("unsteered", None, {"mode": "none", "hook": hook})
            return identity
        return run(name, factory, steer)

    curve = []
    for alpha in alphas:
        factory = latent_factory(vlm, sae, latent, mode, alpha, hook_name=hook, positions=positions)
        metrics = point_metrics(
            alpha, factory, f"latent_{_name(latent)}/alpha_{alpha:g}",
            {**common, "latent": latent, "alpha": alpha},
        )  # fmt: skip
        curve.append(_point(alpha, metrics))

    norm = float(latent_direction(sae, latent).norm())
    randoms = (
        [other if isinstance(other, int) else list(other) for other in random_latents][:n_random]
        if random_latents is not None
        else pick_random_latents(sae, latent, n_random, seed)
    )
    controls = []
    for other in randoms:
        check_latents(sae, other)
        for alpha in alphas:
            factory = latent_factory(
                vlm, sae, other, mode, alpha, hook_name=hook, positions=positions,
                norm=norm if mode == "add" else None,
            )  # fmt: skip
            metrics = point_metrics(
                alpha, factory, f"random_{_name(other)}/alpha_{alpha:g}",
                {**common, "latent": other, "alpha": alpha, "control": "random", "norm": norm},
            )  # fmt: skip
            controls.append(_point(alpha, metrics, latent=other))

    dom_curve = None
    dom_norm = None
    dom_scale = None
    if diff_of_means is not None and mode in ("add", "ablate"):
        from interp.analysis.diff import load_diff_of_means

        direction = (
            diff_of_means
            if isinstance(diff_of_means, torch.Tensor)
            else load_diff_of_means(diff_of_means)
        ).float()
        dom_norm = float(direction.norm())
        if mode == "add" and dom_alphas is None and dom_norm > 0:
            # same alphas as the latent: rescale to the latent's norm, so every curve at one
            # alpha adds a vector of the same length and only the direction differs
            direction = direction * (norm / dom_norm)
            dom_scale = "latent_norm"
        else:
            dom_scale = "raw"
        dom_curve = []
        for alpha in parse_alphas(dom_alphas) if dom_alphas is not None else alphas:
            factory = direction_factory(
                vlm, direction, mode, alpha, hook_name=hook, positions=positions
            )
            metrics = point_metrics(
                alpha, factory, f"diff_of_means/alpha_{alpha:g}",
                {**common, "direction": "diff_of_means", "alpha": alpha, "norm": dom_norm},
            )  # fmt: skip
            dom_curve.append(_point(alpha, metrics))

    result = {
        "hook_name": hook,
        "mode": mode,
        "latent": latent,
        "alphas": alphas,
        "positions": positions,
        "model": vlm.name_or_path,
        "adapter": vlm.adapter_path,
        "latent_norm": norm,
        "n_items": len(items),
        "curve": curve,
        "random_latents": randoms,
        "random_control": controls,
        "diff_of_means": dom_curve,
        "diff_of_means_norm": dom_norm,
        "diff_of_means_scale": dom_scale,
        "effects": summarize_effects(curve, controls, dom_curve),
    }
    write_json_atomic(out / "steering.json", result)
    write_text_atomic(out / "steering.md", render_markdown(result))
    return result


def _value(metric: Any) -> float | None:
    if isinstance(metric, dict):
        return metric.get("value")
    return metric


def random_rank_p(change: float | None, random_changes: Sequence[float]) -> float | None:
    """One-sided permutation p of the chosen latent's ASR change against the random controls:
    the share of the ``n + 1`` interventions (the chosen one included) whose change is at least
    as large in the chosen one's direction. With 8 random sets the smallest possible is 1/9."""
    if change is None or not random_changes or change == 0:
        return None
    sign = 1.0 if change > 0 else -1.0
    as_large = sum(1 for other in random_changes if sign * other >= sign * change)
    return (1 + as_large) / (1 + len(random_changes))


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
        f"# Steering: {result['mode']} latent {_name(result['latent'])} at {result['hook_name']} "
        f"({result['positions']} positions)",
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
