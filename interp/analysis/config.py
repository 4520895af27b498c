"""Options of the latent diff (:class:`DiffConfig`).

Light on purpose (no torch): ``vsfa latents diff`` builds its options from this module at
start-up.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from interp.errors import VSFAError

Test = Literal["ttest", "wilcoxon", "permutation"]
TESTS: tuple[str, ...] = typing.get_args(Test)
Split = Literal["none", "template", "ids"]
SPLITS: tuple[str, ...] = typing.get_args(Split)


@dataclass
class DiffConfig:
    """Options of :func:`interp.analysis.diff_latents` (and of ``vsfa latents diff``)."""

    top: int = 20
    """most increased latents to list (and top // 2 most decreased)"""
    hook: str | None = None
    """cached hook to read (default: the SAE's hook)"""
    test: Test = "ttest"
    """paired over prompts: ttest (scipy), wilcoxon (signed rank, scipy) or permutation
    (sign-flip, no scipy needed)"""
    n_permutations: int = 2000
    """permutations of the sign-flip test"""
    alpha: float = 0.05
    """significance level (Benjamini-Hochberg adjusted p-values)"""
    min_effect_size: float = 0.2
    """smallest |Cohen's d_z| (paired, over prompts) that counts as significant"""
    min_relative_delta: float = 0.01
    """smallest |delta|, as a fraction of the latent's mean activation, that counts as
    significant"""
    select: int = 1
    """latents the selection rule picks"""
    n_runners_up: int = 5
    """runners-up reported beside the selected latents"""
    benign_penalty: float = 1.0
    """weight of the rise on benign prompts subtracted in the selection score (1: prefer latents
    that rose on harmful prompts only; 0: rank by harmful rise)"""
    examples: int = 8
    """top-activating tokens per latent and side"""
    context_tokens: int = 12
    """tokens of context left of an example token (a quarter of it right)"""
    n_logit_tokens: int = 10
    """promoted / suppressed tokens listed per latent"""
    histogram_values: int = 256
    """most nonzero activations kept per latent and side for histograms"""
    batch_rows: int = 4096
    """activation rows encoded at a time"""
    split: Split = "none"
    """which prompts select the latents: none (every prompt; steering or evaluation scored on
    any of them is then circular), template (a seeded half of each kind's prompt templates
    selects, the other half is held out as eval_ids) or ids (--selection-ids / --eval-ids; set
    by either)"""
    split_seed: int = 0
    """seeds which templates the template split holds out"""
    selection_ids: str | None = None
    """file of the prompt ids that select (one per line, a JSON list, or a JSONL of records
    with an id); every other prompt of the caches is held out for evaluation"""
    eval_ids: str | None = None
    """file of the prompt ids held out for evaluation (default: every prompt not in
    --selection-ids; alone: every other prompt selects)"""
    seed: int = 0
    """seeds the permutation test and the histogram subsample"""
    quiet: bool = False
    """no progress bars"""

    def __post_init__(self) -> None:
        if self.test not in TESTS:
            raise VSFAError(f"--test {self.test!r}: expected ttest, wilcoxon or permutation")
        if self.top < 1 or self.select < 1:
            raise VSFAError("--top and --select must be at least 1")
        if self.examples < 1:
            raise VSFAError("--examples must be at least 1")
        if not 0 < self.alpha < 1:
            raise VSFAError(f"--alpha {self.alpha}: expected a level between 0 and 1")
        if not (self.min_effect_size >= 0 and self.min_relative_delta >= 0):
            raise VSFAError("--min-effect-size and --min-relative-delta must be 0 or more")
        if not self.benign_penalty >= 0:
            raise VSFAError(f"--benign-penalty {self.benign_penalty}: expected a weight >= 0")
        if self.split not in SPLITS:
            raise VSFAError(f"--split {self.split!r}: expected none, template or ids")
        given = self.selection_ids is not None or self.eval_ids is not None
        if given and self.split == "template":
            raise VSFAError(
                "--split template holds out templates; --selection-ids / --eval-ids give the "
                "split themselves: choose one"
            )
        if given:
            self.split = "ids"
        elif self.split == "ids":
            raise VSFAError("--split ids needs --selection-ids FILE or --eval-ids FILE")
