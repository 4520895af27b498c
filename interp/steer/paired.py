"""Paired changes of a steered evaluation against the unsteered one, clustered by template.

Two evaluations of the same items (eval folders, :func:`interp.eval.run.evaluate`) give per item
a value of each metric (ASR: unsafe on harmful items; over-refusal: refused on benign items;
capability: correct on items with a reference; samples of one item averaged first). The change
of a metric is the steered minus the unsteered value, item by item, averaged like the summary of
``metrics.json`` (over items within a benchmark, then over benchmarks).

Items written from one prompt template are not independent, so the interval resamples
templates, then items within each drawn template (two-stage bootstrap, stratified by benchmark).
With several fine-tuning seeds (one tuned model each, one change per seed) it first resamples
seeds: a hierarchical interval (seeds, then templates, then items; one draw of templates and
items for every seed). Intervals are percentile intervals, clipped to the metric's range and
always holding the point estimate; the bootstrap lives in :mod:`interp.eval.intervals`.

An item's template (:func:`template_of`) is its ``meta["template"]`` (or ``template_id``,
``probe_id``) when the benchmark records one, else its prompt text: items asked with the same
words (and other images) share a template. :data:`CLUSTERS` offers coarser (category) and no
(item) clustering.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interp.data.records import BenchmarkItem
from interp.errors import VSFAError
from interp.eval.intervals import CLUSTERS, Cluster, cluster_key, clustered_mean, template_of

__all__ = ["CLUSTERS", "Cluster", "cluster_key", "clustered_mean", "clustered_metrics",
           "item_values", "paired_changes", "template_of"]  # fmt: skip

METRICS = ("asr", "over_refusal", "capability")
ItemValues = dict[str, dict[str, float]]
"""Per item key: the value of each metric it has."""


def item_values(eval_dir: str | os.PathLike, items: Sequence[BenchmarkItem]) -> ItemValues:
    """Per item of an eval folder's ``judged.jsonl``: each metric's value (skipped responses
    left out), computed as ``metrics.json`` computes it."""
    from interp.eval.judges import Verdict
    from interp.eval.metrics import item_values as values_of

    path = Path(eval_dir) / "judged.jsonl"
    if not path.exists():
        raise VSFAError(f"{eval_dir} holds no judged.jsonl (not a finished evaluation)")
    by_key = {item.key: item for item in items}
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    unknown = [r["key"] for r in records if r["key"] not in by_key]
    if unknown:
        raise VSFAError(f"{path} judged items that are not being compared: {unknown[:3]}")
    verdicts = [None if r.get("verdict") is None else Verdict(**r["verdict"]) for r in records]
    values = values_of([by_key[r["key"]] for r in records], verdicts)
    return {key: {n: v for n, v in per.items() if n in METRICS} for key, per in values.items()}


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
