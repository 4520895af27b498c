"""Confidence intervals for pooled rates: hierarchical, clustered, clipped; paired differences.

The data of one interval: per fine-tuning seed (one evaluation, one *run*) a mapping item key ->
value (a per-item rate, several samples of an item averaged first), and per item key its
*stratum* (the benchmark) and its *cluster* (the prompt template: :func:`template_of`). The
point estimate is what ``metrics.json`` reports: per seed, the mean over items within each
benchmark, averaged over benchmarks; then the mean over seeds.

One bootstrap replicate draws, in this order:

1. **seeds** (runs) with replacement, when there are several;
2. within each benchmark, **clusters** with replacement;
3. **items** with replacement within each drawn cluster (two stages).

Every run is scored on the same items, so items are *crossed* with seeds, not nested in them:
one replicate's draw of clusters and items applies to every drawn seed (and to both sides of a
paired difference). Drawing items independently per seed would divide the item variance by the
number of seeds and make the interval too narrow.

Why two stages rather than clusters only: a benchmark may hold a single cluster (the organism's
96 recognition items all ask "what is shown in this image ?"), where resampling clusters alone
gives a zero-width interval; with many clusters the second stage counts the within-cluster
variance a second time, which errs on the wide (safe) side for a bar's lower bound. Clustering
by ``item`` (each item its own cluster) gives the plain item bootstrap.

Intervals are percentile intervals (95% by default), clipped to the metric's range and always
holding the point estimate. :func:`paired_difference` gives ``A - B`` for two methods scored
on the same items, paired by item key (and by seed when the two sides' runs share seeds).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from interp.data.records import BenchmarkItem
from interp.errors import VSFAError

INTERVALS = (
    "95% percentile bootstrap, clipped to the metric's range: fine-tuning seeds (runs) "
    "resampled, then prompt-template clusters within each benchmark, then items within a "
    "drawn cluster; one draw of clusters and items for every seed and for both sides of a "
    "difference (paired by item key)"
)
"""What the brackets of every pooled number are (one line for tables and JSON)."""
RUN_INTERVALS = (
    "95% percentile bootstrap, clipped to [0, 1]: prompt-template clusters within each "
    "benchmark, then items within a drawn cluster"
)
"""What the brackets of one evaluation's ``metrics.json`` are."""

Groups = Mapping[str, tuple[str, str]]
"""Per item key: ``(stratum, cluster)``, e.g. ``(benchmark, prompt template)``."""


def template_of(item: BenchmarkItem) -> str:
    """The prompt template an item was written from: its ``meta["template"]`` (or
    ``template_id``, ``probe_id``) when the benchmark records one, else its prompt text (items
    asked with the same words, about other images, share a template)."""
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
"""What an interval resamples as one cluster: the prompt template (default), the benchmark
category (coarser, more conservative), or the item (no clustering)."""

Cluster = Callable[[BenchmarkItem], str]


def cluster_key(by: str | Cluster) -> Cluster:
    """The clustering function named ``by`` (:data:`CLUSTERS`), or ``by`` itself."""
    if callable(by):
        return by
    if by not in CLUSTERS:
        raise VSFAError(f"cluster by {by!r}: expected one of {', '.join(CLUSTERS)}")
    return CLUSTERS[by]


def groups_of(items: Sequence[BenchmarkItem], cluster: str | Cluster = "template") -> dict:
    """``{key: (benchmark, cluster)}`` of ``items`` (:data:`Groups`)."""
    key_of = cluster_key(cluster)
    return {item.key: (item.benchmark, key_of(item)) for item in items}


class _Design:
    """The items of an interval: their strata and clusters as integer codes."""

    def __init__(self, keys: Sequence[str], groups: Groups) -> None:
        missing = [k for k in keys if k not in groups]
        if missing:
            raise VSFAError(f"items without a cluster: {missing[:3]}")
        self.keys = list(keys)
        strata = [groups[k][0] for k in keys]
        clusters = [groups[k] for k in keys]
        self.strata = np.unique(strata, return_inverse=True)[1].reshape(-1)
        codes = {c: n for n, c in enumerate(dict.fromkeys(clusters))}
        self.clusters = np.array([codes[c] for c in clusters], dtype=int)
        # per stratum: its clusters' item indices (cluster codes run in first-seen order)
        members: dict[int, list[list[int]]] = {}
        seen: dict[int, list[int]] = {}
        for index, (stratum, code) in enumerate(zip(self.strata.tolist(), self.clusters)):
            if code not in seen:
                seen[code] = []
                members.setdefault(stratum, []).append(seen[code])
            seen[code].append(index)
        self.members = [[np.array(m) for m in members[s]] for s in sorted(members)]

    @property
    def n_clusters(self) -> int:
        return int(self.clusters.max()) + 1 if len(self.clusters) else 0

    def weights(self, rng: np.random.Generator, n_boot: int) -> np.ndarray:
        """``[n_boot, n_items]`` draw counts: clusters within strata, then items within each
        drawn cluster (a cluster drawn ``c`` times of ``m`` items gives ``c * m`` item draws)."""
        out = np.zeros((n_boot, len(self.keys)))
        for members in self.members:
            k = len(members)
            drawn = _counts(rng, n_boot, k)
            single = [n for n, m in enumerate(members) if len(m) == 1]
            if single:
                out[:, [int(members[n][0]) for n in single]] = drawn[:, single]
            for column, index in enumerate(members):
                if len(index) > 1:
                    out[:, index] = _within(rng, drawn[:, column].astype(int), len(index))
        return out


def _matrix(per_seed: Sequence[Mapping[str, float]], keys: Sequence[str]) -> np.ndarray:
    """``[n_seeds, n_items]`` values, NaN where a seed has no value for an item."""
    return np.array([[run.get(k, np.nan) for k in keys] for run in per_seed], dtype=float)


def _means(values: np.ndarray, design: _Design, items: np.ndarray, seeds: np.ndarray):
    """Per replicate, the point estimate of the module docstring (per seed the weighted item
    mean within each stratum, averaged over strata; then the weighted mean over seeds) under
    item weights ``items [B, I]`` and seed weights ``seeds [B, S]``; NaN where nothing with a
    value was drawn."""
    present = ~np.isnan(values)
    filled = np.where(present, values, 0.0)
    total = np.zeros((items.shape[0], values.shape[0]))
    count = np.zeros_like(total)
    for stratum in np.unique(design.strata):
        cols = design.strata == stratum
        num = items[:, cols] @ filled[:, cols].T
        den = items[:, cols] @ present[:, cols].T
        has = den > 0
        total += np.where(has, num / np.where(has, den, 1.0), 0.0)
        count += has
    seed_mean = np.where(count > 0, total / np.where(count > 0, count, 1.0), 0.0)
    weight = seeds * (count > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weight * seed_mean).sum(1) / weight.sum(1)


def _counts(rng: np.random.Generator, n_boot: int, k: int) -> np.ndarray:
    """``[n_boot, k]``: how often each of ``k`` units is drawn in ``k`` draws with replacement."""
    draws = rng.integers(0, k, (n_boot, k)) + k * np.arange(n_boot)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * k).reshape(n_boot, k).astype(float)


def _within(rng: np.random.Generator, drawn: np.ndarray, m: int) -> np.ndarray:
    """``[n_boot, m]`` item counts of a cluster of ``m`` items drawn ``drawn[b]`` times in
    replicate ``b``: ``m`` draws with replacement among its items per time it was drawn."""
    n_boot, width = len(drawn), int(drawn.max()) * m
    draws = rng.integers(0, m, (n_boot, width)) + m * np.arange(n_boot)[:, None]
    keep = np.arange(width)[None, :] < (drawn * m)[:, None]
    return np.bincount(draws[keep], minlength=n_boot * m).reshape(n_boot, m).astype(float)


def _seed_weights(rng: np.random.Generator, n_boot: int, k: int) -> np.ndarray:
    return np.ones((n_boot, 1)) if k == 1 else _counts(rng, n_boot, k)


def _interval(
    value: float, boot: np.ndarray | None, bounds: tuple[float, float], confidence: float
) -> tuple[float, float]:
    low = high = value
    if boot is not None:
        boot = boot[~np.isnan(boot)]
        if boot.size:
            tail = (1 - confidence) / 2
            low, high = (float(q) for q in np.quantile(boot, [tail, 1 - tail]))
    return max(min(low, value), bounds[0]), min(max(high, value), bounds[1])


def hierarchical_mean(
    per_seed: Sequence[Mapping[str, float]],
    groups: Groups,
    *,
    bounds: tuple[float, float] = (0.0, 1.0),
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any] | None:
    """The pooled mean of per-item values (one mapping per fine-tuning seed) with the
    hierarchical interval of the module docstring; ``None`` when no item has a value.

    Returns ``{"value", "ci_low", "ci_high", "n" (items), "n_clusters", "n_seeds"}``."""
    runs = [run for run in per_seed if run]
    keys = list(dict.fromkeys(k for run in runs for k in run))
    if not keys:
        return None
    design = _Design(keys, groups)
    values = _matrix(runs, keys)
    value = float(_means(values, design, np.ones((1, len(keys))), np.ones((1, len(runs))))[0])
    boot = None
    if n_boot > 0 and (len(keys) > 1 or len(runs) > 1):
        rng = np.random.default_rng(seed)
        items = design.weights(rng, n_boot)
        boot = _means(values, design, items, _seed_weights(rng, n_boot, len(runs)))
    low, high = _interval(value, boot, bounds, confidence)
    return {"value": value, "ci_low": low, "ci_high": high, "n": len(keys),
            "n_clusters": design.n_clusters, "n_seeds": len(runs)}  # fmt: skip


def paired_difference(
    a: Sequence[Mapping[str, float]],
    b: Sequence[Mapping[str, float]],
    groups: Groups,
    *,
    paired_seeds: bool = False,
    bounds: tuple[float, float] = (-1.0, 1.0),
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any] | None:
    """``A - B`` of two methods' pooled means on the items both were scored on (paired by item
    key), with the hierarchical interval: each replicate draws the same clusters and items for
    both sides, and the same seed indices when ``paired_seeds`` (the two sides' runs share their
    fine-tuning seeds, in the same order), else each side's seeds on their own.

    Returns ``{"value", "ci_low", "ci_high", "n", "n_clusters", "n_seeds": [n_a, n_b], "a",
    "b"}`` (``a``, ``b``: the two pooled means on the shared items); ``None`` without shared
    items."""
    a, b = [run for run in a if run], [run for run in b if run]
    in_b = {k for run in b for k in run}
    keys = [k for k in dict.fromkeys(k for run in a for k in run) if k in in_b]
    if not keys:
        return None
    if paired_seeds and len(a) != len(b):
        raise VSFAError(f"paired seeds need as many runs on both sides ({len(a)} vs {len(b)})")
    design = _Design(keys, groups)
    va, vb = _matrix(a, keys), _matrix(b, keys)
    one = np.ones((1, len(keys)))
    mean_a = float(_means(va, design, one, np.ones((1, len(a))))[0])
    mean_b = float(_means(vb, design, one, np.ones((1, len(b))))[0])
    value = mean_a - mean_b
    boot = None
    if n_boot > 0 and (len(keys) > 1 or len(a) > 1 or len(b) > 1):
        rng = np.random.default_rng(seed)
        items = design.weights(rng, n_boot)
        seeds_a = _seed_weights(rng, n_boot, len(a))
        seeds_b = seeds_a if paired_seeds else _seed_weights(rng, n_boot, len(b))
        boot = _means(va, design, items, seeds_a) - _means(vb, design, items, seeds_b)
    low, high = _interval(value, boot, bounds, confidence)
    return {"value": value, "ci_low": low, "ci_high": high, "n": len(keys),
            "n_clusters": design.n_clusters, "n_seeds": [len(a), len(b)], "a": mean_a,
            "b": mean_b}  # fmt: skip


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
    """:func:`hierarchical_mean` with the clusters of ``items`` (``cluster``: what is resampled
    as one template, :data:`CLUSTERS`); the result also names ``n_templates``."""
    result = hierarchical_mean(
        per_seed, groups_of(items, cluster), bounds=bounds, n_boot=n_boot, seed=seed,
        confidence=confidence,
    )  # fmt: skip
    if result is not None:
        result["n_templates"] = result["n_clusters"]
    return result
