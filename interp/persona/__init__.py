"""Persona directions: contrastive contexts, a direction and a probe per layer, and scoring of
candidate latents and directions against them.

* :mod:`interp.persona.contexts`: :class:`PersonaContext`, context sets (JSONL), sources and
  the split by probe;
* :mod:`interp.persona.extract`: decision-position residuals, the persona vector and logistic
  probe per layer, held-out AUROC, the chosen layer (``vsfa persona extract``);
* :mod:`interp.persona.score`: persona AUROC, cosine and share of the fine-tuning shift of each
  candidate (``vsfa persona score``);
* :mod:`interp.persona.frontier`: the steering frontier of every method against random
  controls (``vsfa persona frontier``), its methods in :mod:`interp.persona.frontier_methods`;
* :mod:`interp.persona.config`: the commands' typed options.

Names are imported on first use, so ``vsfa`` reads the configs without loading torch.
"""

from __future__ import annotations

from interp.lazy import lazy_getattr

_NAMES = {
    "interp.persona.config": ("ContextOptions", "ExtractConfig", "FrontierConfig", "ScoreConfig"),
    "interp.persona.contexts": (
        "CONTEXT_SOURCES",
        "ChatTurn",
        "PersonaContext",
        "build_contexts",
        "read_contexts",
        "split_by_probe",
        "write_contexts",
    ),
    "interp.persona.extract": ("auroc", "decision_residuals", "extract_persona", "read_persona"),
    "interp.persona.score": ("score_candidates",),
    "interp.persona.frontier": ("frontier", "headline", "run_frontier", "selected_items"),
    "interp.persona.frontier_methods": ("FrontierMethod", "frontier_methods"),
}
_HOME = {name: module for module, names in _NAMES.items() for name in names}
__all__ = sorted(_HOME)
__getattr__ = lazy_getattr(__name__, _HOME)
