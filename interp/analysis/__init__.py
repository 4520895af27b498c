"""Model diffing: which SAE latents fine-tuning changed, with significance and evidence."""

from interp.analysis.diff import (
    SELECTION_RULE,
    DiffConfig,
    benjamini_hochberg,
    diff_latents,
    load_diff_of_means,
    logit_effect,
    paired_test,
    select_latents,
    write_latents,
)

__all__ = [
    "SELECTION_RULE",
    "DiffConfig",
    "benjamini_hochberg",
    "diff_latents",
    "load_diff_of_means",
    "logit_effect",
    "paired_test",
    "select_latents",
    "write_latents",
]
