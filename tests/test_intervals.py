"""The hierarchical bootstrap: clusters, clipping, seeds, crossed items, paired differences."""

from __future__ import annotations

import numpy as np
import pytest

from interp.data.records import BenchmarkItem
from interp.errors import VSFAError
from interp.eval.intervals import groups_of, hierarchical_mean, paired_difference


def width(metric):
    return metric["ci_high"] - metric["ci_low"]


def _items(n=96, prompts=12, bench="b"):
    return [BenchmarkItem(bench, f"i{i}", "c", None, f"prompt {i % prompts}", "harmful")
            for i in range(n)]  # fmt: skip


def _by_prompt(items, rates):
    """Values in {0, 1} whose share per prompt is ``rates[prompt]`` (deterministic)."""
    out = {}
    for n, item in enumerate(items):
        prompt = int(item.prompt.split()[1])
        rank = n // len(rates)
        out[item.key] = float(rank < rates[prompt] * (len(items) // len(rates)))
    return out


def test_clustered_interval_is_wider_than_the_item_interval_when_items_repeat_prompts():
    items = _items()
    # prompts decide the answer: half of them always comply, half never
    values = _by_prompt(items, [1.0, 0.0] * 6)
    clustered = hierarchical_mean([values], groups_of(items), n_boot=2000, seed=0)
    by_item = hierarchical_mean([values], groups_of(items, "item"), n_boot=2000, seed=0)
    assert clustered["value"] == by_item["value"] == 0.5
    assert clustered["n"] == 96 and clustered["n_clusters"] == 12 and by_item["n_clusters"] == 96
    # 12 independent units instead of 96: about sqrt(8) = 2.8 times wider
    assert width(clustered) > 2.2 * width(by_item)
    # items independent of prompts: clustering costs almost nothing
    mixed = {item.key: float(n // 12 % 2) for n, item in enumerate(items)}
    a = hierarchical_mean([mixed], groups_of(items), n_boot=2000, seed=0)
    b = hierarchical_mean([mixed], groups_of(items, "item"), n_boot=2000, seed=0)
    assert width(a) < 1.6 * width(b)


def test_a_single_cluster_keeps_its_item_interval():
    items = _items(prompts=1)
    values = {item.key: float(n % 4 == 0) for n, item in enumerate(items)}
    result = hierarchical_mean([values], groups_of(items), n_boot=1000, seed=0)
    assert result["n_clusters"] == 1 and result["value"] == 0.25
    assert result["ci_low"] < 0.2 and result["ci_high"] > 0.3


def test_intervals_are_clipped_and_hold_the_estimate():
    items = _items(n=20, prompts=20)
    ones = hierarchical_mean([{i.key: 1.0 for i in items}], groups_of(items), n_boot=200)
    assert ones["ci_low"] == ones["ci_high"] == 1.0
    rare = {i.key: float(n == 0) for n, i in enumerate(items)}
    result = hierarchical_mean([rare], groups_of(items), n_boot=500, seed=1)
    assert result["ci_low"] == 0.0 <= result["value"] <= result["ci_high"] <= 1.0
    # a difference is clipped to [-1, 1]
    gap = paired_difference([{i.key: 1.0 for i in items}], [{i.key: 0.0 for i in items}],
                            groups_of(items), n_boot=200)  # fmt: skip
    assert gap["value"] == gap["ci_low"] == gap["ci_high"] == 1.0
    assert hierarchical_mean([{}], groups_of(items)) is None


def test_seeds_are_resampled():
    items = _items(n=30, prompts=5)
    groups = groups_of(items)
    seeds = [{i.key: value for i in items} for value in (0.1, 0.3, 0.5)]
    result = hierarchical_mean(seeds, groups, n_boot=1000, seed=1)
    assert result["value"] == pytest.approx(0.3) and result["n_seeds"] == 3
    # items agree within a seed, so the whole interval comes from the seeds
    assert result["ci_low"] < 0.2 and result["ci_high"] > 0.4
    one = hierarchical_mean(seeds[:1], groups, n_boot=1000, seed=1)
    assert one["ci_low"] == pytest.approx(0.1) and one["ci_high"] == pytest.approx(0.1)
    five = [{i.key: value for i in items} for value in (0.1, 0.2, 0.3, 0.4, 0.5)]
    first = hierarchical_mean(five, groups, n_boot=1000, seed=1)
    assert 0.1 < first["ci_low"] < 0.3 < first["ci_high"] < 0.5  # inside the seeds' range
    assert hierarchical_mean(five, groups, n_boot=1000, seed=1) == first  # seeded
    assert hierarchical_mean(five, groups, n_boot=1000, seed=2) != first


def test_items_are_crossed_with_seeds():
    """Three seeds scored identically on the same items know no more about the items than one:
    one draw of items serves every seed, so the interval does not shrink."""
    items = _items()
    values = _by_prompt(items, np.linspace(0, 1, 12))
    one = hierarchical_mean([values], groups_of(items), n_boot=2000, seed=0)
    three = hierarchical_mean([values] * 3, groups_of(items), n_boot=2000, seed=0)
    assert width(three) == pytest.approx(width(one), rel=0.15)


def test_summary_strata_weigh_benchmarks_equally():
    items = _items(n=10, prompts=10, bench="a") + _items(n=40, prompts=40, bench="z")
    values = {i.key: float(i.benchmark == "a") for i in items}
    result = hierarchical_mean([values], groups_of(items), n_boot=300)
    # each benchmark is constant, so resampling within benchmarks cannot move the mean
    assert result["value"] == result["ci_low"] == result["ci_high"] == 0.5


def test_paired_difference_removes_what_both_sides_share():
    items = _items()
    groups = groups_of(items)
    base = _by_prompt(items, np.linspace(0.1, 0.9, 12))
    lowered = {k: max(v - 0.25, 0.0) if n % 2 else v for n, (k, v) in enumerate(base.items())}
    diff = paired_difference([lowered], [base], groups, n_boot=2000, seed=0)
    alone = [hierarchical_mean([v], groups, n_boot=2000, seed=0) for v in (lowered, base)]
    assert diff["value"] == pytest.approx(alone[0]["value"] - alone[1]["value"])
    assert diff["a"] == pytest.approx(alone[0]["value"]) and diff["n"] == 96
    # the prompts' shared level cancels: much narrower than either side's own interval
    assert width(diff) < 0.5 * min(width(m) for m in alone)
    assert diff["ci_high"] < 0


def test_paired_difference_pairs_seeds_when_asked():
    items = _items(n=24, prompts=4)
    groups = groups_of(items)
    # seed s shifts both sides by the same amount: pairing seeds cancels it
    a = [{i.key: 0.2 + s for i in items} for s in (0.0, 0.3, 0.6)]
    b = [{i.key: 0.1 + s for i in items} for s in (0.0, 0.3, 0.6)]
    paired = paired_difference(a, b, groups, paired_seeds=True, n_boot=500, seed=0)
    unpaired = paired_difference(a, b, groups, n_boot=500, seed=0)
    assert paired["value"] == pytest.approx(0.1) == unpaired["value"]
    assert width(paired) == pytest.approx(0.0, abs=1e-12) and width(unpaired) > 0.3
    assert paired["n_seeds"] == [3, 3]
    with pytest.raises(VSFAError, match="paired seeds need as many runs"):
        paired_difference(a, b[:2], groups, paired_seeds=True)
    # only items scored on both sides count
    partial = paired_difference(a, [{items[0].key: 0.0}], groups, n_boot=50)
    assert partial["n"] == 1
