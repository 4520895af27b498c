"""The selection rule: which latents a diff names as the persona candidate(s), and runners-up.

The rule is written into ``latents.json`` (``selected.rule``) beside what it picked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from interp.analysis.stats import SubsetStats

HARMFUL, BENIGN = "harmful", "benign"

SELECTION_RULE = (
    "candidates: latents whose per-prompt mean activation rose significantly on harmful prompts "
    "(paired test, Benjamini-Hochberg adjusted p < {alpha}); score = increase on harmful "
    "prompts - {penalty} x max(0, increase on benign prompts); highest score first"
)
SELECTION_RULE_ALL = (
    "no harmful/benign split in the prompts: candidates are latents whose per-prompt mean "
    "activation rose significantly over all prompts (paired test, BH-adjusted p < {alpha}); "
    "score = increase; highest first"
)


def select_latents(
    stats: dict[str, SubsetStats],
    *,
    alpha: float = 0.05,
    n_select: int = 1,
    n_runners_up: int = 5,
    benign_penalty: float = 1.0,
) -> dict[str, Any]:
    """Pick the candidate persona latent(s) (rule in ``SELECTION_RULE``) and the runners-up.

    ``stats`` maps ``harmful`` / ``benign`` / ``all`` to that subset's paired statistics. When
    nothing is significant, ``latents`` is empty and the runners-up are the largest increases
    (for inspection, not for steering claims).
    """
    harmful = stats.get(HARMFUL)
    if harmful is not None and harmful.n >= 2:
        benign = stats.get(BENIGN)
        penalty = np.maximum(benign.delta, 0) if benign is not None and benign.n else 0.0
        score = harmful.delta - benign_penalty * penalty
        candidate = (harmful.delta > 0) & (harmful.p_adjusted < alpha)
        rule = SELECTION_RULE.format(alpha=alpha, penalty=benign_penalty)
    else:
        overall = stats["all"]
        score = overall.delta.copy()
        candidate = (overall.delta > 0) & (overall.p_adjusted < alpha)
        rule = SELECTION_RULE_ALL.format(alpha=alpha)
    order = np.argsort(-score, kind="stable")
    ranked = [int(i) for i in order if candidate[i]]
    selected = ranked[:n_select]
    runners = ranked[n_select : n_select + n_runners_up]
    if len(runners) < n_runners_up:  # fill with the best non-significant ones, flagged below
        rest = [int(i) for i in order if int(i) not in selected and int(i) not in runners]
        runners += rest[: n_runners_up - len(runners)]
    return {
        "rule": rule,
        "latents": selected,
        "runners_up": runners,
        "scores": {str(i): float(score[i]) for i in selected + runners},
        "significant": {str(i): bool(candidate[i]) for i in selected + runners},
    }


def prompt_subsets(kinds: list[str]) -> dict[str, np.ndarray]:
    """Row indices of ``all`` prompts, and of the ``harmful`` and ``benign`` ones present."""
    kinds_arr = np.array(kinds)
    subsets = {"all": np.arange(len(kinds))}
    for kind in (HARMFUL, BENIGN):
        rows = np.flatnonzero(kinds_arr == kind)
        if len(rows):
            subsets[kind] = rows
    return subsets
