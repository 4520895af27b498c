"""Paired statistics over prompts: tests per latent, false-discovery correction, effect size.

Each prompt's mean activation in the base and in the tuned cache form a pair. Significance: a
paired t-test over prompts (scipy, vectorised over latents), a Wilcoxon signed-rank test, or a
sign-flip permutation test (``test="permutation"``, also the fallback when scipy is missing);
p-values are adjusted for the number of latents tested with Benjamini-Hochberg.

A change is *significant* (:func:`significant`) only when three things hold at once: the
adjusted p is below ``alpha``, the paired effect size ``|d_z|`` reaches ``min_effect_size``, and
``|delta|`` reaches ``min_relative_delta`` of the latent's mean activation. Many prompts make a
tiny, consistent change "significant" by p alone; the two floors keep noise from being called
a finding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from interp.analysis.config import DiffConfig


def paired_test(
    base: np.ndarray,
    tuned: np.ndarray,
    *,
    test: str = "ttest",
    n_permutations: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """Two-sided p-value per column for paired samples ``[n_pairs, n_columns]``.

    Differences within float rounding of zero count as zero. A column whose differences do not
    vary gets p = 1 when they are all zero (no change) and p = 0 when they are one nonzero
    constant (every prompt moved by the same amount).
    """
    diff = tuned - base
    tolerance = 1e-6 * (1.0 + np.abs(base) + np.abs(tuned))
    diff = np.where(np.abs(diff) <= tolerance, 0.0, diff)
    n = diff.shape[0]
    if n < 2:
        return np.ones(diff.shape[1])
    varying = diff.std(0) > 1e-12 * (1.0 + np.abs(diff).max(0))
    p = np.where(np.abs(diff).max(0) > 0, 0.0, 1.0)  # the non-varying columns
    if not varying.any():
        return p
    d = diff[:, varying]
    if test in ("ttest", "wilcoxon"):
        try:
            from scipy import stats
        except ImportError:  # pragma: no cover - scipy is a dependency; keep a fallback anyway
            test = "permutation"
        else:
            with np.errstate(all="ignore"):
                if test == "ttest":
                    result = stats.ttest_1samp(d, 0.0, axis=0)
                else:
                    result = stats.wilcoxon(d, axis=0, zero_method="zsplit")
            p[varying] = np.nan_to_num(result.pvalue, nan=1.0)
            return p
    rng = np.random.default_rng(seed)
    observed = np.abs(d.mean(0))
    exceed = np.zeros(d.shape[1])
    for _ in range(n_permutations):
        signs = rng.choice([-1.0, 1.0], size=(n, 1))
        exceed += np.abs((d * signs).mean(0)) >= observed - 1e-12
    p[varying] = (exceed + 1) / (n_permutations + 1)
    return p


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """False-discovery-rate adjusted p-values (monotone, capped at 1)."""
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def effect_size(diff: np.ndarray) -> np.ndarray:
    """Cohen's d_z of paired differences (mean / sd; 0 when there is no variation)."""
    sd = diff.std(0, ddof=1) if diff.shape[0] > 1 else np.zeros(diff.shape[1])
    mean = diff.mean(0)
    with np.errstate(all="ignore"):
        d = np.where(sd > 0, mean / np.where(sd > 0, sd, 1), 0.0)
    return d


@dataclass
class SubsetStats:
    """Paired per-prompt statistics of every latent on one subset of prompts."""

    n: int
    delta: np.ndarray
    p_value: np.ndarray
    p_adjusted: np.ndarray
    effect_size: np.ndarray
    mean: np.ndarray
    """mean activation over the subset's prompts, base and tuned together"""


def significant(
    stats: SubsetStats,
    *,
    alpha: float = 0.05,
    min_effect_size: float = 0.2,
    min_relative_delta: float = 0.01,
) -> np.ndarray:
    """Per latent: adjusted p < ``alpha`` and ``|d_z| >= min_effect_size`` and
    ``|delta| >= min_relative_delta * mean activation`` (a change in either direction)."""
    big_enough = np.abs(stats.delta) >= min_relative_delta * np.abs(stats.mean)
    return (
        (stats.p_adjusted < alpha)
        & (np.abs(stats.effect_size) >= min_effect_size)
        & big_enough
        & (stats.delta != 0)
    )


def significance_rule(cfg: DiffConfig) -> str:
    """The text of :func:`significant` with the thresholds of ``cfg``."""
    return (
        f"Benjamini-Hochberg adjusted p < {cfg.alpha:g} and |Cohen's d_z| >= "
        f"{cfg.min_effect_size:g} and |delta| >= {100 * cfg.min_relative_delta:g}% of the "
        "mean activation"
    )


def subset_stats(
    base: np.ndarray, tuned: np.ndarray, rows: np.ndarray, cfg: DiffConfig
) -> SubsetStats:
    """Paired statistics of every latent over the prompts ``rows`` of per-prompt means
    ``[n_prompts, d_sae]``, with the test of ``cfg``."""
    b, t = base[rows], tuned[rows]
    p = paired_test(b, t, test=cfg.test, n_permutations=cfg.n_permutations, seed=cfg.seed)
    return SubsetStats(
        n=len(rows),
        delta=(t - b).mean(0) if len(rows) else np.zeros(base.shape[1]),
        p_value=p,
        p_adjusted=benjamini_hochberg(p),
        effect_size=effect_size(t - b),
        mean=(t + b).mean(0) / 2 if len(rows) else np.zeros(base.shape[1]),
    )
