"""Dose-response sweep of one steering intervention through the eval harness, with controls.

The steered unit is one SAE latent or a set of them (edited together, see
:func:`interp.steer.interventions.latent_edit`); what it does at each alpha is the registered
steering mode's (:mod:`interp.steer.modes`).

For each alpha the model is evaluated (``interp.eval.run.evaluate``: generation with the
steering hook entered around every batch, judging, metrics with bootstrap CIs). Controls:

* **random latents** (``n_random``, seeded): the same intervention on other latents (sets of
  the same size for a set); for ``add`` their decoder direction is rescaled to the chosen one's
  norm, so only the direction differs.
* **difference of means** (tuned minus base residual mean, from ``vsfa latents diff``): ``add``
  adds ``alpha *`` it, rescaled to the latent's decoder norm unless ``dom_alphas`` are given
  (then the raw difference: alpha 1 adds exactly tuned-minus-base); ``ablate`` and
  ``project-out`` project it out (``alpha`` = fraction removed); no baseline for ``clamp``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from interp.artifacts import write_json_atomic, write_text_atomic
from interp.errors import VSFAError
from interp.parallel import process_group
from interp.sae.latents import Latents, check_latents, latent_direction
from interp.steer.config import SteerConfig
from interp.steer.interventions import sae_hook
from interp.steer.modes import HookFactory, SteerSite, steering_mode
from interp.steer.report import latent_name, render_markdown, summarize_effects

CURVE_METRICS = ("asr", "over_refusal", "capability", "cs")


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


def _chosen_latents(sae: Any, config: SteerConfig) -> Latents:
    """``config.latent``, else the latents.json's selected latent(s); checked against the SAE."""
    if config.latent is not None:
        latent = config.latent
    else:
        from interp.analysis.latents_file import selected_latents

        latent = selected_latents(config.latents)
    chosen = check_latents(sae, latent)
    return latent if isinstance(latent, int) else chosen


def _load_baseline(source: str | os.PathLike) -> torch.Tensor:
    from interp.analysis.latents_file import load_diff_of_means

    return load_diff_of_means(source).float()


def steer_sweep(
    vlm: Any,
    items: Sequence[Any],
    sae: Any,
    judge: Any,
    out_dir: str | os.PathLike,
    config: SteerConfig,
    *,
    generation: Any = None,
    random_latents: Sequence[Latents] | None = None,
    label: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``config.mode`` steering of the chosen latent (an index or a list of them,
    steered together) at every alpha, with controls; write ``steering.json`` and
    ``steering.md`` into ``out_dir`` and return the JSON dict.

    ``generation`` is the eval harness's ``GenerationConfig``; ``random_latents`` replaces the
    seeded draw of control latents (the first ``n_random`` are used); ``label`` is added to
    every point's metrics. Every point is one ``evaluate`` folder under ``out_dir`` (resumable:
    finished points are read back, not regenerated). Under ``torchrun`` (call it on every
    rank) the ranks share every point's generation; rank 0 judges, writes and returns the
    sweep (the other ranks' copies hold no metrics: they do not wait for the judge).
    """
    with process_group(str(vlm.device), command="steer") as ranks:
        result = _sweep(vlm, items, sae, judge, Path(out_dir), config, generation=generation,
                        random_latents=random_latents, label=label)  # fmt: skip
        if ranks.is_main:
            write_json_atomic(Path(out_dir) / "steering.json", result)
            write_text_atomic(Path(out_dir) / "steering.md", render_markdown(result))
    return result


def _sweep(
    vlm: Any,
    items: Sequence[Any],
    sae: Any,
    judge: Any,
    out: Path,
    config: SteerConfig,
    *,
    generation: Any,
    random_latents: Sequence[Latents] | None,
    label: dict[str, Any] | None,
) -> dict[str, Any]:
    """The ``steering.json`` dict of :func:`steer_sweep` (every point evaluated)."""
    from interp.eval.run import evaluate

    mode = steering_mode(config.mode)
    latent = _chosen_latents(sae, config)
    hook = sae_hook(vlm, sae, config.hook)
    alphas, positions = config.alphas, config.positions
    base_label = {"method": f"steer-{config.mode}", **(label or {})}
    site = SteerSite(vlm, sae, hook, positions)

    def run(name: str, factory: HookFactory | None, steer: dict[str, Any]) -> dict:
        hooks = [factory] if factory is not None else []
        return evaluate(
            vlm, items, out / name, judge=judge, generation=generation, hooks=hooks,
            label={**base_label, "steer": steer}, n_boot=config.n_boot, quiet=config.quiet,
        )  # fmt: skip

    # each point's "steer" label; its "alpha" (None here) is filled in per point, in place
    common = {"mode": config.mode, "hook": hook, "positions": positions}
    identity: dict[str, Any] | None = None

    def point(
        alpha: float, make: Callable[[float], HookFactory | None], name: str, steer: dict,
        **extra: Any,
    ) -> dict[str, Any]:  # fmt: skip
        nonlocal identity
        if mode.unsteered_at_zero and alpha == 0:  # no steering: evaluate once, share it
            if identity is None:
                identity = run("unsteered", None, {"mode": "none", "hook": hook})
            metrics = identity
        else:
            metrics = run(f"{name}/alpha_{alpha:g}", make(alpha), {**steer, "alpha": alpha})
        return _point(alpha, metrics, **extra)

    chosen = functools.partial(mode.hook, site, latent)
    steer = {**common, "latent": latent, "alpha": None}
    curve = [point(a, chosen, f"latent_{latent_name(latent)}", steer) for a in alphas]

    norm = float(latent_direction(sae, latent).norm())
    if random_latents is None:
        randoms = pick_random_latents(sae, latent, config.n_random, config.seed)
    else:
        randoms = [o if isinstance(o, int) else list(o) for o in random_latents]
        randoms = randoms[: config.n_random]
    controls = []
    for other in randoms:
        check_latents(sae, other)
        control = functools.partial(mode.random_control, site, other, norm=norm)
        steer = {**common, "latent": other, "alpha": None, "control": "random", "norm": norm}
        name = f"random_{latent_name(other)}"
        controls += [point(a, control, name, steer, latent=other) for a in alphas]

    dom_curve = dom_norm = dom_scale = None
    if config.baseline is not None and mode.has_baseline:
        direction = _load_baseline(config.baseline)
        dom_norm = float(direction.norm())
        if mode.baseline_at_latent_norm and config.dom_alphas is None and dom_norm > 0:
            # same alphas as the latent: rescale to the latent's norm, so every curve at one
            # alpha adds a vector of the same length and only the direction differs
            direction = direction * (norm / dom_norm)
            dom_scale = "latent_norm"
        else:
            dom_scale = "raw"
        baseline = functools.partial(mode.baseline, site, direction)
        steer = {**common, "direction": "diff_of_means", "alpha": None, "norm": dom_norm}
        dom_alphas = config.dom_alphas if config.dom_alphas is not None else alphas
        dom_curve = [point(a, baseline, "diff_of_means", steer) for a in dom_alphas]

    result = {
        "hook_name": hook,
        "mode": config.mode,
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
    return result
