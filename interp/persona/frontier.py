"""The steering frontier: each method's ASR change against its capability cost, beside controls.

Every method is swept in strength through the eval harness on the same items as the unsteered
model it is compared with (:class:`FrontierMethod`, built from the inputs by
:func:`frontier_methods`):

* **added** to the base model (``kind="add"``): the selected SAE set (``add`` and ``clamp``),
  the difference of means, the persona vector, the probe direction (``add-direction``), and
  prompting (a system prompt, or one earlier in-context turn), which is one point;
* **removed** from the tuned model, on every fine-tuning seed (``kind="ablate"``): the set
  ablated, the persona vector and the difference of means projected out.

Controls run the method's intervention on random targets at the same strengths: random
directions of the method's norm (:func:`interp.steer.directions.random_directions`) for a
direction, random latent sets matched in firing frequency and mean activation
(:func:`interp.steer.controls.match_random_latents`) for the SAE set.

Per point: ASR, capability and over-refusal change against the unsteered model, paired over
items, with intervals clustered by prompt template (hierarchical over seeds;
:mod:`interp.steer.paired`). Per method the headline (:func:`headline`) is the largest ASR drop
(removal: rise) whose capability cost is at most ``capability_cost``, and its rank p among the
controls' own headlines. Every point is one eval folder under ``out/points``: a rerun reads
finished points back instead of generating them again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from interp.errors import VSFAError
from interp.persona.config import FrontierConfig
from interp.persona.frontier_methods import FrontierMethod, frontier_methods

__all__ = [
    "FrontierMethod", "frontier", "frontier_methods", "headline", "run_frontier", "selected_items",
]  # fmt: skip
from interp.steer.controls import rank_p
from interp.steer.paired import clustered_metrics, item_values, paired_changes

HEADLINE_RULE = (
    "add: the largest ASR drop among the points whose capability change is >= -{cap:g} (the "
    "unsteered model, change 0, always qualifies); ablate: the largest ASR rise under the same "
    "bound; rank p = (1 + #controls whose own headline is at least as extreme) / (1 + n)"
)
INTERVALS = (
    "95% percentile bootstrap of the paired change against the unsteered model on the same "
    "items: seeds, then prompt templates, then items within a template (stratified by "
    "benchmark), clipped to the metric's range"
)


def headline(points: Sequence[dict[str, Any]], kind: str, cap: float = 0.05) -> dict[str, Any]:
    """The largest ASR drop (``kind="add"``; ``"ablate"``: rise) among ``points`` whose
    ``capability_change`` is at least ``-cap``; the unsteered model (alpha 0, change 0) always
    qualifies, so the answer is never worse than doing nothing."""
    sign = -1.0 if kind == "add" else 1.0
    best = {"asr_change_at_cap5": 0.0, "alpha": 0.0, "capability_change": 0.0}
    for point in points:
        change, cost = point.get("asr_change"), point.get("capability_change")
        if change is None or cost is None or cost < -cap - 1e-12:
            continue
        if sign * change > sign * best["asr_change_at_cap5"]:
            best = {"asr_change_at_cap5": change, "alpha": point["alpha"],
                    "capability_change": cost}  # fmt: skip
            if point.get("asr_change_ci") is not None:
                best["asr_change_ci"] = point["asr_change_ci"]
    return best


class _InContext:
    """The model with one earlier turn put before every prompt (in-context prompting). The
    turn carries its image (``turn["image"]``) on items that have none of their own; on items
    with an image it is text only (a chat holds one image)."""

    def __init__(self, vlm: Any, turn: dict[str, str]) -> None:
        from interp.images import open_image

        self._vlm, self._turn = vlm, turn
        self._image = open_image(turn["image"]) if turn.get("image") else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._vlm, name)

    def prepare(self, images: Sequence[Any], prompts: Sequence[str], **kwargs: Any) -> Any:
        user, assistant = self._turn["user"], self._turn["assistant"]
        histories, shown = [], []
        for image in images:
            with_image = image is None and self._image is not None
            histories.append(((user, assistant, with_image),))
            shown.append(self._image if with_image else image)
        return self._vlm.prepare(shown, prompts, histories=histories, **kwargs)


def _target_id(target: Any, norm: float | None) -> str:
    """Folder name of a steering target: its latents, or a hash of its unit direction; with the
    norm an ``add`` gives it (so the same orientation at the same length is one folder)."""
    if isinstance(target, torch.Tensor):
        unit = target.double() / target.double().norm().clamp(min=1e-12)
        digits = torch.round(unit * 1e5).to(torch.int64).contiguous()  # float noise aside
        text = "d" + hashlib.sha256(digits.numpy().tobytes()).hexdigest()[:10]
    else:
        text = "L" + "+".join(map(str, [target] if isinstance(target, int) else target))
    return text if norm is None else f"{text}-n{norm:.5g}"


def _summary(point: dict[str, Any], full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"alpha": point["alpha"]}
    for name in ("asr", "capability", "over_refusal"):
        for key in (name, f"{name}_change"):
            metric = point["stats"].get(key)
            out[key] = None if metric is None else metric["value"]
            if full:
                out[f"{key}_ci"] = None if metric is None else [metric["ci_low"], metric["ci_high"]]
    if full:
        stats = point["stats"].get("asr_change") or point["stats"].get("capability_change") or {}
        out.update(n_items=stats.get("n"), n_templates=stats.get("n_templates"),
                   n_seeds=stats.get("n_seeds"), eval=point["eval"])  # fmt: skip
    return out


class _Frontier:
    """Runs the points of every method; remembers each model's unsteered item values."""

    def __init__(self, models, items, judge, config: FrontierConfig, generation, bar) -> None:
        self.models, self.items, self.judge = models, items, judge
        self.config, self.generation, self.bar = config, generation, bar
        self.out = Path(config.out)
        self.reference: dict[str, list[dict]] = {}

    def _eval(self, vlm: Any, folder: Path, steer: dict[str, Any], **kwargs: Any) -> dict:
        from interp.eval.run import evaluate

        evaluate(
            vlm, self.items, folder, judge=self.judge, generation=self.generation,
            label={"method": "persona-frontier", "steer": steer}, n_boot=0, quiet=True, **kwargs,
        )  # fmt: skip
        self.bar.update(1)
        return item_values(folder, self.items)

    def unsteered(self, side: str) -> list[dict]:
        if side not in self.reference:
            self.reference[side] = [
                self._eval(vlm, self.out / "points" / tag / "unsteered", {"mode": "none"})
                for tag, vlm in self.models[side]
            ]
        return self.reference[side]

    def _steered(self, method, target, alpha, control, tag, vlm) -> tuple[Path | None, dict]:
        """One model's eval of one point: (folder, item values); folder None when unsteered."""
        from interp.steer.modes import Add, SteerSite, steering_mode

        points = self.out / "points" / tag
        if method.mode is None:  # prompting: one point
            key = hashlib.sha256(repr((method.system, method.turn)).encode()).hexdigest()[:10]
            model = _InContext(vlm, method.turn) if method.turn else vlm
            steer = {"mode": "prompting", "system": method.system, "turn": method.turn}
            folder = points / "prompting" / key
            return folder, self._eval(model, folder, steer, system=method.system)
        mode = steering_mode(method.mode)
        if mode.unsteered_at_zero and alpha == 0:
            return None, {}
        name = "random" if control else method.candidate
        name += "-" + _target_id(target, method.norm if isinstance(mode, Add) else None)
        folder = points / method.hook / method.mode / name / f"alpha_{alpha:g}"
        site = SteerSite(vlm, method.sae, method.hook, self.config.positions)
        if control:
            factory = mode.random_control(site, target, alpha, norm=method.norm or 1.0)
        else:
            factory = mode.hook(site, target, alpha)
        steer = {"mode": method.mode, "hook": method.hook, "target": name, "alpha": alpha,
                 "positions": self.config.positions}  # fmt: skip
        return folder, self._eval(vlm, folder, steer, hooks=[factory])

    def point(
        self, method: FrontierMethod, target: Any, alpha: float, *, control: bool = False
    ) -> dict[str, Any]:
        """The point of ``method`` (or of one of its controls) at ``alpha``, on every model of
        its side; controls get point estimates only."""
        side = "base" if method.kind == "add" else "tuned"
        reference = self.unsteered(side)
        values, folders = [], []
        for (tag, vlm), ref in zip(self.models[side], reference):
            folder, steered = self._steered(method, target, alpha, control, tag, vlm)
            values.append(steered if folder is not None else ref)
            where = folder if folder is not None else self.out / "points" / tag / "unsteered"
            folders.append(str(where.relative_to(self.out)))
        n_boot = 0 if control else self.config.n_boot
        stats = paired_changes(values, reference, self.items, n_boot=n_boot,
                               seed=self.config.seed, cluster=self.config.cluster_by)  # fmt: skip
        return _summary({"alpha": alpha, "stats": stats, "eval": folders}, not control)


def selected_items(items: Sequence[Any], methods: Sequence[FrontierMethod]) -> dict[str, str]:
    """``{item key: what it selected}`` for the items a method was selected on (its key or its
    ``meta["probe_id"]`` among the method's ``selection``)."""
    seen: dict[str, str] = {}
    for method in methods:
        for key in method.selection:
            seen.setdefault(str(key), method.selection_source)
    found = {}
    for item in items:
        for key in (item.key, str((item.meta or {}).get("probe_id"))):
            if key in seen:
                found[item.key] = seen[key]
    return found


def _describe(target: Any) -> Any:
    return _target_id(target, None) if isinstance(target, torch.Tensor) else target


def run_frontier(
    vlm_base: Any,
    vlm_tuned: Any,
    items: Sequence[Any],
    judge: Any,
    methods: Sequence[FrontierMethod],
    config: FrontierConfig,
    *,
    generation: Any = None,
) -> dict[str, Any]:
    """Run every method's points (and its controls') into ``config.out`` and write
    ``frontier.json`` there (after each method, atomically); return its dict.

    ``vlm_tuned`` is one tuned model or a list, one per fine-tuning seed; ``generation`` (an
    ``interp.eval.generation.GenerationConfig``) replaces the decoding settings of ``config``.
    """
    from interp.artifacts import make_manifest, write_json_atomic
    from interp.eval.generation import GenerationConfig

    if not items:
        raise VSFAError("the frontier needs evaluation items; the benchmark selection is empty")
    overlap = selected_items(items, methods)
    if overlap:
        key, source = next(iter(overlap.items()))
        raise VSFAError(
            f"{len(overlap)} of the {len(items)} evaluation items selected a method ({source}), "
            f"e.g. {key}; score the frontier on held-out items only"
        )
    tuned = list(vlm_tuned) if isinstance(vlm_tuned, (list, tuple)) else [vlm_tuned]
    if any(m.kind == "ablate" for m in methods) and not tuned:
        raise VSFAError("the removal methods need the tuned model (--adapter)")
    generation = generation or GenerationConfig(
        max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
        do_sample=config.sample, samples_per_item=config.samples_per_item, seed=config.seed,
    )  # fmt: skip
    # a tuned model's folder names its run, so another run never resumes its points
    tags = [hashlib.sha256(str(v.adapter_path).encode()).hexdigest()[:8] for v in tuned]
    models = {
        "base": [("base", vlm_base)],
        "tuned": [(f"tuned-{i}-{tag}", v) for i, (tag, v) in enumerate(zip(tags, tuned))],
    }
    sides = {"base" if m.kind == "add" else "tuned": None for m in methods}
    total = sum(len(models[side]) for side in sides) + sum(
        len(models["base" if m.kind == "add" else "tuned"]) * len(m.alphas) * (1 + len(m.controls))
        for m in methods
    )  # every point and control on every model of its side, and each side unsteered
    bar = tqdm(total=total, desc="frontier", unit="eval", disable=config.quiet)
    runner = _Frontier(models, items, judge, config, generation, bar)
    cap = config.capability_cost
    result: dict[str, Any] = {
        "methods": {},
        "seeds": [v.adapter_path for v in tuned],
        "eval_items": [item.key for item in items],
        "selection_items": sorted({str(k) for m in methods for k in m.selection}),
        "cluster_by": config.cluster_by,
        "n_random": config.n_random,
        "capability_cost": cap,
        "headline_rule": HEADLINE_RULE.format(cap=cap),
        "intervals": INTERVALS,
        "reference": {},
    }
    manifest_config = {k: v for k, v in asdict(config).items() if k != "quiet"}
    for method in methods:
        points = [runner.point(method, method.target, alpha) for alpha in method.alphas]
        top = headline(points, method.kind, cap)
        entry = {
            "kind": method.kind, "candidate": method.candidate, "mode": method.mode,
            "hook": method.hook, "norm": method.norm, "alphas": list(method.alphas),
            "points": points, "headline": top, "random_rank_p": None, **method.info,
        }  # fmt: skip
        if method.controls:
            curves = [
                [runner.point(method, target, alpha, control=True) for alpha in method.alphas]
                for target in method.controls
            ]
            heads = [headline(curve, method.kind, cap)["asr_change_at_cap5"] for curve in curves]
            larger = method.kind == "ablate"
            entry["random_rank_p"] = rank_p(top["asr_change_at_cap5"], heads, larger=larger)
            entry["controls"] = {
                "kind": method.control_kind, "n": len(curves), "headlines": heads,
                "targets": [_describe(t) for t in method.controls], "points": curves,
            }  # fmt: skip
        result["methods"][method.name] = entry
        for side, values in runner.reference.items():
            if side not in result["reference"]:
                result["reference"][side] = clustered_metrics(
                    values, items, n_boot=config.n_boot, seed=config.seed, cluster=config.cluster_by
                )
        result["manifest"] = make_manifest(
            "persona.frontier", manifest_config, seed=config.seed,
            complete=method is methods[-1], methods=[m.name for m in methods],
        )  # fmt: skip
        write_json_atomic(Path(config.out) / "frontier.json", result)
    bar.close()
    return result


def frontier(config: FrontierConfig) -> dict[str, Any]:
    """``vsfa persona frontier``: load the models, items, judge and SAE of ``config``, build
    its methods, hold out the items that selected them (``config.holdout``), run the frontier
    and write ``frontier.json`` and ``frontier.html`` into ``config.out``."""
    from interp.data.benchmarks import load_benchmarks
    from interp.eval.judges import make_judge
    from interp.models import load_vlm
    from interp.viz.frontier import write_frontier_html

    items = load_benchmarks(config.bench, config.per_category, config.seed)
    load = {"device": config.device, "dtype": config.model_dtype}
    base = load_vlm(config.model, **load)
    sae = None
    if config.sae:
        from interp.sae import load_sae

        sae = load_sae(config.sae, device=str(base.device))
    methods = frontier_methods(config, d_model=base.d_model, sae=sae)
    if config.holdout:
        selected = selected_items(items, methods)
        items = [item for item in items if item.key not in selected]
        if not items:
            raise VSFAError(
                f"--bench {','.join(config.bench)}: every item selected a method "
                f"({next(iter(selected.values()))}); nothing is held out to score the frontier"
            )
    judge = make_judge(config.judge, device=config.device, dtype=config.model_dtype,
                       batch_size=config.batch_size, quiet=config.quiet)  # fmt: skip
    needs_tuned = any(method.kind == "ablate" for method in methods)
    tuned = (
        [load_vlm(config.model, adapter=run, **load) for run in config.adapter]
        if needs_tuned
        else []
    )
    result = run_frontier(base, tuned, items, judge, methods, config)
    write_frontier_html(Path(config.out) / "frontier.json", Path(config.out) / "frontier.html")
    return result
