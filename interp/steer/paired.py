"""Paired changes of a steered evaluation against the unsteered one, clustered by template.

Two evaluations of the same items (eval folders, :func:`interp.eval.run.evaluate`) give per item
a value of each metric (ASR: unsafe on harmful items; over-refusal: refused on benign items;
capability: correct on items with a reference; samples of one item averaged first). The change
of a metric is the steered minus the unsteered value, item by item, averaged like the summary of
``metrics.json`` (over items within a benchmark, then over benchmarks).

Items written from one prompt template are not independent, so the interval resamples
templates, then items within each drawn template (two-stage bootstrap, stratified by benchmark).
With several fine-tuning seeds (one tuned model each, one change per seed) it first resamples
seeds: a hierarchical interval (seeds, then templates, then items). Intervals are percentile
intervals, clipped to the metric's range and always holding the point estimate.

An item's template (:func:`template_of`) is its ``meta["template"]`` (or ``template_id``,
``probe_id``) when the benchmark records one, else its prompt text: items asked with the same
words (and other images) share a template. :data:`CLUSTERS` offers coarser (category) and no
(item) clustering.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from interp.data.records import BenchmarkItem
from interp.errors import VSFAError

METRICS = ("asr", "over_refusal", "capability")
ItemValues = dict[str, dict[str, float]]
"""Per item key: the value of each metric it has."""


def template_of(item: BenchmarkItem) -> str:
    """The prompt template an item was written from (see the module docstring)."""
    meta = item.meta or {}
    for key in ("template", "template_id", "probe_id"):
        if meta.get(key) is not None:
            return str(meta[key])
    return item.prompt


def _category(item: BenchmarkItem) -> str:
    return item.category


def _item(item: BenchmarkItem) -> str:
    return item.key


CLUSTERS = {"template": template_of, "category": _category, "item": _item}
"""What an interval resamples as one unit: the prompt template (default), the benchmark
category (coarser, more conservative), or the item (no clustering)."""

Cluster = Callable[[BenchmarkItem], str]


def cluster_key(by: str | Cluster) -> Cluster:
    """The clustering function named ``by`` (:data:`CLUSTERS`), or ``by`` itself."""
    if callable(by):
        return by
    if by not in CLUSTERS:
        raise VSFAError(f"cluster by {by!r}: expected one of {', '.join(CLUSTERS)}")
    return CLUSTERS[by]


def item_values(eval_dir: str | os.PathLike, items: Sequence[BenchmarkItem]) -> ItemValues:
    """Per item of an eval folder's ``judged.jsonl``: each metric's value (skipped responses
    left out), computed as ``metrics.json`` computes it."""
    from interp.eval.judges import Verdict
    from interp.eval.metrics import _per_item_values

    path = Path(eval_dir) / "judged.jsonl"
    if not path.exists():
        raise VSFAError(f"{eval_dir} holds no judged.jsonl (not a finished evaluation)")
    by_key = {item.key: item for item in items}
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    unknown = [r["key"] for r in records if r["key"] not in by_key]
    if unknown:
        raise VSFAError(f"{path} judged items that are not being compared: {unknown[:3]}")
    verdicts = [None if r.get("verdict") is None else Verdict(**r["verdict"]) for r in records]
    values, _, _ = _per_item_values([by_key[r["key"]] for r in records], verdicts)
    return {
        key: {name: float(np.mean(per[name])) for name in METRICS if per.get(name)}
        for key, per in values.items()
    }


class _Template:
    """One benchmark's items of one seed, grouped by template (values concatenated)."""

    def __init__(self, groups: Mapping[str, list[float]]) -> None:
        self.values = [np.asarray(v, float) for v in groups.values()]
        self.counts = np.array([len(v) for v in self.values])

    @property
    def mean(self) -> float:
        return float(np.concatenate(self.values).mean())

    def boot(self, rng: np.random.Generator, n_boot: int) -> np.ndarray:
        """``n_boot`` resampled means: templates with replacement, then items within each."""
        n_t = len(self.values)
        # each template's item-resampled means, one column per replicate
        table = np.stack(
            [v[rng.integers(0, len(v), (n_boot, len(v)))].mean(1) for v in self.values]
        )
        pick = rng.integers(0, n_t, (n_boot, n_t))
        replicate = rng.integers(0, n_boot, (n_boot, n_t))
        counts = self.counts[pick]
        return (table[pick, replicate] * counts).sum(1) / counts.sum(1)


def _groups(
    values: Mapping[str, float], templates: Mapping[str, tuple[str, str]]
) -> dict[str, _Template]:
    by_bench: dict[str, dict[str, list[float]]] = {}
    for key, value in values.items():
        bench, template = templates[key]
        by_bench.setdefault(bench, {}).setdefault(template, []).append(value)
    return {bench: _Template(groups) for bench, groups in by_bench.items()}


def clustered_mean(
    per_seed: Sequence[Mapping[str, float]],
    items: Sequence[BenchmarkItem],
    *,
    bounds: tuple[float, float],
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    cluster: str | Cluster = "template",
) -> dict[str, Any] | None:
    """Mean of per-item values (one mapping per seed) with the hierarchical, template-clustered
    interval of the module docstring (``cluster``: what is resampled as one template,
    :data:`CLUSTERS`); ``None`` when no item has a value."""
    key_of = cluster_key(cluster)
    templates = {item.key: (item.benchmark, key_of(item)) for item in items}
    seeds = [_groups(values, templates) for values in per_seed if values]
    if not seeds:
        return None
    value = float(np.mean([np.mean([g.mean for g in s.values()]) for s in seeds]))
    n_items = sum(len(values) for values in per_seed) // max(len(per_seed), 1)
    n_templates = max(sum(len(g.values) for g in s.values()) for s in seeds)
    low = high = value
    if n_boot > 0 and n_items > 1:
        rng = np.random.default_rng(seed)
        # per seed, n_boot replicates of the benchmark-averaged mean
        table = np.stack([np.mean([g.boot(rng, n_boot) for g in s.values()], 0) for s in seeds])
        k = len(seeds)
        pick = rng.integers(0, k, (n_boot, k)) if k > 1 else np.zeros((n_boot, 1), int)
        replicate = rng.integers(0, n_boot, (n_boot, k)) if k > 1 else np.arange(n_boot)[:, None]
        boot = table[pick, replicate].mean(1)
        tail = (1 - confidence) / 2
        low, high = (float(q) for q in np.quantile(boot, [tail, 1 - tail]))
    low, high = max(min(low, value), bounds[0]), min(max(high, value), bounds[1])
    return {
        "value": value, "ci_low": low, "ci_high": high, "n": n_items, "n_templates": n_templates,
        "n_seeds": len(seeds),
    }  # fmt: skip


def clustered_metrics(
    per_seed: Sequence[ItemValues], items: Sequence[BenchmarkItem], *, n_boot: int = 1000,
    seed: int = 0, cluster: str | Cluster = "template",
) -> dict[str, Any]:  # fmt: skip
    """Per metric: its value over the items (one mapping of item values per seed) with the
    clustered interval."""
    return {
        name: clustered_mean(
            [{k: v[name] for k, v in values.items() if name in v} for values in per_seed],
            items,
            bounds=(0.0, 1.0),
            n_boot=n_boot,
            seed=seed,
        )  # fmt: skip
        for name in METRICS
    }


def paired_changes(
    steered: Sequence[ItemValues],
    reference: Sequence[ItemValues],
    items: Sequence[BenchmarkItem],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    cluster: str | Cluster = "template",
) -> dict[str, Any]:
    """Per metric: the steered value and the paired change against the reference (one pair of
    item values per fine-tuning seed), each with its clustered interval; only items judged on
    both sides count."""
    if len(steered) != len(reference):
        raise VSFAError(f"{len(steered)} steered evaluations for {len(reference)} references")
    out: dict[str, Any] = {}
    for name in METRICS:
        values, changes = [], []
        for after, before in zip(steered, reference):
            keys = [k for k in after if name in after[k] and name in before.get(k, {})]
            values.append({k: after[k][name] for k in keys})
            changes.append({k: after[k][name] - before[k][name] for k in keys})
        common = {"items": items, "n_boot": n_boot, "seed": seed, "cluster": cluster}
        out[name] = clustered_mean(values, bounds=(0.0, 1.0), **common)
        out[f"{name}_change"] = clustered_mean(changes, bounds=(-1.0, 1.0), **common)
    return out
