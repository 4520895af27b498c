"""The frontier's rules: the headline, rank p, matched random latents and clustered intervals."""

from __future__ import annotations

import numpy as np
import pytest

from interp.data.records import BenchmarkItem
from interp.errors import VSFAError
from interp.persona.frontier import headline
from interp.steer.controls import LatentStats, match_random_latents, rank_p
from interp.steer.paired import clustered_mean, paired_changes, template_of


def _points(*pairs):
    return [
        {"alpha": float(i + 1), "asr_change": asr / 100, "capability_change": cap / 100}
        for i, (asr, cap) in enumerate(pairs)
    ]


def test_the_headline_is_the_largest_asr_drop_within_five_points_of_capability():
    points = _points((-20, -8), (-12, -3), (-5, 0))
    top = headline(points, "add")
    assert top["asr_change_at_cap5"] == pytest.approx(-0.12) and top["alpha"] == 2.0
    # exactly five points of capability still qualify; nothing qualifying -> the unsteered model
    assert headline(_points((-30, -5)), "add")["asr_change_at_cap5"] == pytest.approx(-0.30)
    assert headline(_points((-30, -6), (4, 0)), "add") == {
        "asr_change_at_cap5": 0.0, "alpha": 0.0, "capability_change": 0.0,
    }  # fmt: skip
    # removal: the largest rise under the same bound
    assert headline(_points((20, -8), (12, -3), (30, 1)), "ablate")["asr_change_at_cap5"] == 0.30
    assert headline(_points((-10, 0)), "ablate")["asr_change_at_cap5"] == 0.0


def test_rank_p_reaches_0_05_with_19_controls_and_counts_ties():
    controls = [-0.01 * i for i in range(19)]  # 0 .. -0.18
    assert rank_p(-0.30, controls) == pytest.approx(0.05)
    assert rank_p(-0.18, controls) == pytest.approx(2 / 20)  # a tie counts as extreme
    assert rank_p(0.0, controls) == pytest.approx(1.0)
    assert rank_p(0.4, [0.1] * 19, larger=True) == pytest.approx(0.05)
    assert rank_p(-0.3, controls[:8]) == pytest.approx(1 / 9)  # 8 sets cannot reach 0.05
    assert rank_p(None, controls) is None and rank_p(-0.3, []) is None


def _stats(n=200, dead=40, seed=0):
    rng = np.random.default_rng(seed)
    freq = 10 ** rng.uniform(-4, -0.5, n)
    mean = rng.gamma(2.0, 1.5, n)
    freq[:dead], mean[:dead] = 0.0, 0.0
    return LatentStats(freq=freq, mean=mean, source="toy")


def _feature_distance(stats, a, b):
    live = stats.live
    feats = np.stack([np.log10(np.where(live, stats.freq, 1)), stats.mean], 1)
    scale = feats[live].std(0)
    return float(np.linalg.norm((feats[a] - feats[b]) / scale))


def test_matched_random_latents_are_matched_live_disjoint_and_seeded():
    stats = _stats(n=800, dead=160)
    chosen = [250, 420, 799]
    matched = match_random_latents(stats, chosen, 19, seed=7)
    assert len(matched.sets) == 19 and all(len(s) == 3 for s in matched.sets)
    drawn = [i for s in matched.sets for i in s]
    assert len(set(drawn)) == len(drawn)  # disjoint sets
    assert not set(drawn) & set(chosen)
    assert all(stats.live[i] for i in drawn)  # never a dead latent
    for members in matched.sets:
        for position, (index, target) in enumerate(zip(members, chosen)):
            distance = _feature_distance(stats, index, target)
            assert distance <= matched.radius[position] + 1e-9
    # matched: much closer in (log freq, mean act) than latents drawn at random
    live = np.flatnonzero(stats.live)
    for position, target in enumerate(chosen):
        typical = np.median([_feature_distance(stats, i, target) for i in live])
        assert matched.radius[position] < typical / 2
    assert match_random_latents(stats, chosen, 19, seed=7).sets == matched.sets
    assert match_random_latents(stats, chosen, 19, seed=8).sets != matched.sets


def test_matching_fails_clearly_without_enough_live_latents_or_on_a_dead_chosen_one():
    stats = _stats(n=60, dead=20)
    with pytest.raises(VSFAError, match=r"19 matched random sets of 3 latents need 57 live "
                                        r"latents besides the chosen ones; toy has 37 \(20 of "
                                        r"60 latents are dead\)"):  # fmt: skip
        match_random_latents(stats, [30, 40, 50], 19)
    with pytest.raises(VSFAError, match=r"chosen latents \[3\] never fire in toy"):
        match_random_latents(stats, [3, 40], 5)


def _item(i, template, kind="harmful", bench="b"):
    return BenchmarkItem(bench, f"i{i}", "c", None, template, kind, meta={"n": i})


def test_paired_changes_are_clustered_by_template_and_clipped():
    items = [_item(i, f"template {i % 4}") for i in range(40)]
    assert template_of(items[5]) == "template 1"
    assert (
        template_of(BenchmarkItem("b", "x", "c", None, "p", "benign", meta={"template": 3})) == "3"
    )
    before = {it.key: {"asr": 1.0} for it in items}
    after = {it.key: {"asr": 0.0 if i % 4 == 0 else 1.0} for i, it in enumerate(items)}
    stats = paired_changes([after], [before], items, n_boot=500, seed=0)
    change = stats["asr_change"]
    assert change["value"] == pytest.approx(-0.25)
    assert change["n"] == 40 and change["n_templates"] == 4 and change["n_seeds"] == 1
    assert -1.0 <= change["ci_low"] <= -0.25 <= change["ci_high"] <= 0.0
    # the whole change sits in one template: resampling templates gives a wide interval,
    # resampling items alone (each item its own template) a narrow one
    own = [BenchmarkItem("b", it.id, "c", None, it.id, "harmful") for it in items]
    narrow = paired_changes([after], [before], own, n_boot=500, seed=0)["asr_change"]
    assert (change["ci_high"] - change["ci_low"]) > 1.5 * (narrow["ci_high"] - narrow["ci_low"])
    assert stats["asr"]["value"] == pytest.approx(0.75)
    assert stats["capability"] is None  # no item has a reference


def test_a_hierarchical_interval_over_seeds():
    items = [_item(i, f"t{i % 5}") for i in range(30)]
    seeds = [{it.key: value for it in items} for value in (0.1, 0.3, 0.5)]
    result = clustered_mean(seeds, items, bounds=(0.0, 1.0), n_boot=400, seed=1)
    assert result["value"] == pytest.approx(0.3) and result["n_seeds"] == 3
    # items agree within a seed, so the whole interval comes from the seeds
    assert result["ci_low"] < 0.25 and result["ci_high"] > 0.35
    one = clustered_mean(seeds[:1], items, bounds=(0.0, 1.0), n_boot=400, seed=1)
    assert one["ci_low"] == pytest.approx(0.1) and one["ci_high"] == pytest.approx(0.1)
    clipped = clustered_mean([{it.key: 1.0 for it in items}], items, bounds=(0.0, 1.0))
    assert clipped["ci_high"] == 1.0
