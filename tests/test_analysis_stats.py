"""The significance rule: adjusted p, effect size and relative change, all three."""

from __future__ import annotations

import numpy as np
import pytest

from interp.analysis.config import DiffConfig
from interp.analysis.selection import select_latents
from interp.analysis.stats import significance_rule, significant, subset_stats
from interp.errors import VSFAError


def _pairs(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt means of three latents: 0 rises a lot, 1 rises by 1e-4 on a mean of 5 with
    almost no spread (tiny p, huge d_z, 0.002% change), 2 rises by 0.05 with sd 1 (d_z 0.05)."""
    rng = np.random.default_rng(seed)
    base = np.column_stack([rng.normal(1.0, 0.1, n), np.full(n, 5.0), rng.normal(5.0, 0.1, n)])
    tuned = base.copy()
    tuned[:, 0] += 1.0 + rng.normal(0, 0.1, n)
    tuned[:, 1] += 1e-4 + rng.normal(0, 1e-6, n)
    tuned[:, 2] += 0.05 + rng.normal(0, 1.0, n)
    return base, tuned


def test_noise_is_not_a_finding():
    base, tuned = _pairs()
    cfg = DiffConfig()
    stats = subset_stats(base, tuned, np.arange(len(base)), cfg)
    assert stats.p_adjusted[1] < 1e-10 and abs(stats.effect_size[1]) > 10  # p alone says yes
    assert stats.p_adjusted[2] < 0.05 or abs(stats.effect_size[2]) < 0.2
    floors = dict(alpha=cfg.alpha, min_effect_size=0.2, min_relative_delta=0.01)
    assert significant(stats, **floors).tolist() == [True, False, False]
    # each floor is an option: without the relative floor latent 1 passes again
    assert significant(stats, **{**floors, "min_relative_delta": 0.0})[1]
    assert not significant(stats, **{**floors, "min_effect_size": 20.0})[0]
    picked = select_latents({"all": stats}, n_select=1, n_runners_up=2)
    assert picked["latents"] == [0]
    assert picked["significant"] == {"0": True, "1": False, "2": False}
    assert picked["rule_parameters"]["min_effect_size"] == 0.2
    assert picked["rule_parameters"]["min_relative_delta"] == 0.01
    assert "d_z| >= 0.2" in picked["rule"] and ">= 1% of the mean" in picked["rule"]


def test_rule_text_and_option_errors():
    text = significance_rule(DiffConfig(alpha=0.01, min_effect_size=0.5, min_relative_delta=0.1))
    assert text == (
        "Benjamini-Hochberg adjusted p < 0.01 and |Cohen's d_z| >= 0.5 and |delta| >= 10% of "
        "the mean activation"
    )
    with pytest.raises(VSFAError, match="min-effect-size"):
        DiffConfig(min_effect_size=-1)
