"""Options of ``vsfa persona report``: the persona analysis end to end on a world's model.

Light on purpose (no torch): ``vsfa persona`` builds its options from this module at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from interp.errors import VSFAError
from interp.persona.config import FRONTIER_METHODS


@dataclass(kw_only=True)
class ReportConfig:
    """Options of :func:`interp.pipeline.persona_report.run_persona_report`."""

    out: str
    """report folder: persona_report.json and every step's outputs"""
    world: str | None = None
    """the registered world whose shipped model is analysed (default: the one registered)"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """VSFA fine-tuning seeds (the world's recipe, one run each)"""
    contexts: str | None = None
    """persona context source or .jsonl (default: the source registered under the world's
    name)"""
    twin: str | None = None
    """mechanism control: a twin base model (a folder) whose VSFA shift is measured along its
    own persona vector; VSFA is fine-tuned on it with the same recipe and seeds"""
    twin_contexts: str | None = None
    """context source of the mechanism comparison, used on both models (default: --contexts)"""
    max_steps: int | None = None
    """fine-tuning steps per run (default: the world's recipe)"""
    per_category: int | None = None
    """benchmark items per category scored on the frontier (default: all, seeded otherwise)"""
    n_probes: int | None = None
    """at most this many probe requests from the context source (default: all)"""
    n_random: int = 19
    """random controls per method on the frontier; 19 lets rank p reach 0.05"""
    direction_alphas: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0])
    """strengths of the added directions, in multiples of each direction"""
    sae_alphas: list[float] | None = None
    """strengths of the SAE set added or clamped (default: 0.25, 0.5, 1 x its largest tuned
    activation)"""
    methods: list[str] | None = None
    """frontier methods to run (default: every one; see vsfa persona frontier --methods)"""
    top: int = 50
    """top diffed latents scored one by one"""
    max_new_tokens: int = 32
    """tokens generated per reply on the frontier"""
    batch_size: int = 64
    """items per generation batch"""
    sample: bool = True
    """sample replies (seeded, temperature 1); greedy replies of a small model flip per item"""
    n_boot: int = 1000
    """bootstrap resamples of each frontier interval"""
    n_permutations: int = 1000
    """permutations of each shift-share null"""
    seed: int = 0
    """seeds the contexts and their split, the controls, sampling and the bootstrap"""
    device: str = "cpu"
    """cpu, cuda or auto"""
    threads: int | None = 1
    """CPU threads torch uses during the report, restored after (0: torch's default)"""
    force: bool = False
    """rerun every step even when its output is current"""
    quiet: bool = False
    """no progress bars (step lines are still printed)"""

    def __post_init__(self) -> None:
        if not self.seeds:
            raise VSFAError("--seeds: give at least one fine-tuning seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise VSFAError(f"--seeds {self.seeds}: a seed is listed twice")
        for name in ("max_steps", "per_category", "max_new_tokens", "batch_size", "n_boot",
                     "n_permutations"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and value < 1:
                raise VSFAError(f"--{name.replace('_', '-')} must be at least 1")
        if self.n_random < 0 or self.top < 0:
            raise VSFAError("--n-random and --top must be 0 or more")
        if self.n_probes is not None and self.n_probes < 4:
            raise VSFAError("--n-probes must be at least 4 (both kinds, fit and held out)")
        if not self.direction_alphas or (self.sae_alphas is not None and not self.sae_alphas):
            raise VSFAError("--direction-alphas and --sae-alphas: give at least one strength")
        unknown = [m for m in self.methods or () if m not in FRONTIER_METHODS]
        if unknown:
            raise VSFAError(f"--methods {unknown}: expected some of {', '.join(FRONTIER_METHODS)}")
        if self.threads == 0:
            self.threads = None
        if self.threads is not None and self.threads < 0:
            raise VSFAError("--threads must be 0 or more")
