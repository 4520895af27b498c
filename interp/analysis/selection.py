"""The selection rule: which latents a diff names as the persona candidate(s), and runners-up.

The rule is fixed here, before any evaluation; its text and parameters are written into
``latents.json`` (``selected.rule``, ``selected.rule_parameters``) beside what it picked. It
sees the selection split only (:mod:`interp.analysis.split`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from interp.analysis.stats import SubsetStats, significant

HARMFUL, BENIGN = "harmful", "benign"

SELECTION_RULE = (
    "candidates: latents whose per-prompt mean activation rose significantly on harmful prompts "
    "(paired test, Benjamini-Hochberg adjusted p < {alpha}, |Cohen's d_z| >= {effect}, increase "
    ">= {relative}% of the mean activation); score = increase on harmful prompts - {penalty} x "
    "max(0, increase on benign prompts); highest score first"
)
SELECTION_RULE_ALL = (
    "no harmful/benign split in the prompts: candidates are latents whose per-prompt mean "
    "activation rose significantly over all prompts (paired test, BH-adjusted p < {alpha}, "
    "|Cohen's d_z| >= {effect}, increase >= {relative}% of the mean activation); score = "
    "increase; highest first"
)


SPLIT_NOTE = " (statistics of the selection split only: selection_ids; eval_ids held out)"


def selection_scores(
    stats: dict[str, SubsetStats],
    *,
    alpha: float = 0.05,
    benign_penalty: float = 1.0,
    min_effect_size: float = 0.2,
    min_relative_delta: float = 0.01,
) -> tuple[np.ndarray, np.ndarray, str]:
    """The rule's score and candidate mask of every latent on one split, and the rule's text.

    A candidate rose and is significant by :func:`interp.analysis.stats.significant` (adjusted
    p, effect size and relative change, all three)."""
    floors = {"alpha": alpha, "min_effect_size": min_effect_size,
              "min_relative_delta": min_relative_delta}  # fmt: skip
    text = {"alpha": alpha, "effect": min_effect_size, "relative": f"{100 * min_relative_delta:g}"}
    harmful = stats.get(HARMFUL)
    if harmful is not None and harmful.n >= 2:
        benign = stats.get(BENIGN)
        penalty = np.maximum(benign.delta, 0) if benign is not None and benign.n else 0.0
        score = harmful.delta - benign_penalty * penalty
        candidate = (harmful.delta > 0) & significant(harmful, **floors)
        return score, candidate, SELECTION_RULE.format(penalty=benign_penalty, **text)
    overall = stats["all"]
    candidate = (overall.delta > 0) & significant(overall, **floors)
    return overall.delta.copy(), candidate, SELECTION_RULE_ALL.format(**text)


def select_latents(
    stats: dict[str, SubsetStats],
    *,
    alpha: float = 0.05,
    n_select: int = 1,
    n_runners_up: int = 5,
    benign_penalty: float = 1.0,
    held_out: dict[str, SubsetStats] | None = None,
    min_effect_size: float = 0.2,
    min_relative_delta: float = 0.01,
) -> dict[str, Any]:
    """Pick the candidate persona latent(s) (rule in ``SELECTION_RULE``) and the runners-up.

    ``stats`` maps ``harmful`` / ``benign`` / ``all`` to that subset's paired statistics on the
    selection prompts. When nothing is significant, ``latents`` is empty and the runners-up are
    the largest increases (for inspection, not for steering claims). ``held_out``, the same
    statistics on the eval prompts, adds the rule's scores there (``eval``): whether what was
    selected replicates on prompts that did not select it.
    """
    floors = {
        "alpha": alpha,
        "benign_penalty": benign_penalty,
        "min_effect_size": min_effect_size,
        "min_relative_delta": min_relative_delta,
    }
    score, candidate, rule = selection_scores(stats, **floors)
    order = np.argsort(-score, kind="stable")
    ranked = [int(i) for i in order if candidate[i]]
    selected = ranked[:n_select]
    runners = ranked[n_select : n_select + n_runners_up]
    if len(runners) < n_runners_up:  # fill with the best non-significant ones, flagged below
        rest = [int(i) for i in order if int(i) not in selected and int(i) not in runners]
        runners += rest[: n_runners_up - len(runners)]
    listed = selected + runners
    result: dict[str, Any] = {
        "rule": rule if held_out is None else rule + SPLIT_NOTE,
        "rule_parameters": {
            "alpha": alpha,
            "min_effect_size": min_effect_size,
            "min_relative_delta": min_relative_delta,
            "benign_penalty": benign_penalty,
            "n_select": n_select,
            "n_runners_up": n_runners_up,
            "statistic": "per-prompt mean activation, paired base/tuned",
            "prompts": "selection_ids",
        },
        "latents": selected,
        "runners_up": runners,
        "scores": {str(i): float(score[i]) for i in listed},
        "significant": {str(i): bool(candidate[i]) for i in listed},
    }
    if held_out is not None:
        score, candidate, _ = selection_scores(held_out, **floors)
        result["eval"] = {
            "scores": {str(i): float(score[i]) for i in listed},
            "significant": {str(i): bool(candidate[i]) for i in listed},
        }
    return result


def prompt_subsets(kinds: list[str], rows: list[int] | None = None) -> dict[str, np.ndarray]:
    """Row indices of ``all`` prompts (of ``rows``, default every prompt), and of the
    ``harmful`` and ``benign`` ones among them."""
    every = np.arange(len(kinds)) if rows is None else np.asarray(rows, dtype=np.int64)
    kinds_arr = np.array(kinds)[every] if len(kinds) else np.array([], dtype=str)
    subsets = {"all": every}
    for kind in (HARMFUL, BENIGN):
        found = every[kinds_arr == kind]
        if len(found):
            subsets[kind] = found
    return subsets
