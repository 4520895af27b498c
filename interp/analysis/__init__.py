"""Model diffing: which SAE latents fine-tuning changed, with significance and evidence.

Names are imported on first use, so ``vsfa`` reads :class:`DiffConfig` without loading torch.
"""

from __future__ import annotations

from interp.lazy import lazy_getattr

_NAMES = {
    "interp.analysis.config": ("DiffConfig",),
    "interp.analysis.diff": ("diff_latents",),
    "interp.analysis.stats": ("benjamini_hochberg", "paired_test"),
    "interp.analysis.selection": ("SELECTION_RULE", "select_latents"),
    "interp.analysis.evidence": ("logit_effect",),
    "interp.analysis.latents_file": (
        "check_disjoint",
        "load_diff_of_means",
        "selected_latents",
        "write_latents",
    ),
    "interp.analysis.split": ("PromptSplit", "prompt_template", "read_ids", "split_prompts"),
    "interp.analysis.examples": ("EXAMPLE_RULE", "top_examples"),
}
_HOME = {name: module for module, names in _NAMES.items() for name in names}
__all__ = sorted(_HOME)
__getattr__ = lazy_getattr(__name__, _HOME)
