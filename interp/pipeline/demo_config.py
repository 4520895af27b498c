"""What ``vsfa demo`` runs: :class:`DemoConfig` (no heavy imports; the CLI reads it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from interp.errors import VSFAError

# Fields that must be at least 1 when given.
AT_LEAST_ONE = ("per_category", "steer_per_category", "n_random", "persona_random",
                "max_new_tokens", "batch_size", "sae_steps", "sae_width", "sae_k",
                "sae_batch_size")  # fmt: skip


@dataclass
class DemoConfig:
    """Settings of one demo run. ``None`` fields take the ``fast`` or the full default."""

    out: str = "vsfa-demo"
    """output folder"""
    world: str | None = None
    """the registered world to run on (default: the one registered)"""
    fast: bool = False
    """the shipped SAE instead of training one, one seed, fewer items and alphas (< 3 min on a
    CPU)"""
    seeds: list[int] | None = None
    """training seeds of the fine-tuned methods (default 0,1; 0 with --fast)"""
    per_category: int | None = None
    """benchmark items per category for the evaluation (default 24, 8 with --fast)"""
    steer_per_category: int | None = None
    """benchmark items per category for each steering point (default 8, 4 with --fast)"""
    max_new_tokens: int = 24
    """generation length (the shipped models answer briefly)"""
    samples_per_item: int | None = None
    """sampled answers per item at temperature 1 (default 4, 2 with --fast; 0: greedy); greedy
    ASR of a small model flips between 0 and 1 per item, sampling gives a graded rate"""
    alphas: list[float] | None = None
    """add strengths, in units of the latent's largest activation on the tuned model (default
    0,0.25,0.5,1,2; 0,0.5,1 with --fast)"""
    ablate_scales: list[float] | None = None
    """fractions of the latent removed from the tuned model (default 0,0.5,1; 0,1 with
    --fast)"""
    n_random: int | None = None
    """random latent sets in the steering control (default 19, so the chosen set's rank among
    them can reach p = 0.05; 2 with --fast, whose rank p cannot go below 1/3)"""
    persona_random: int | None = None
    """random sets per method in the persona frontier's control (default 19, so a method's rank
    among them can reach p = 0.05; 2 with --fast)"""
    persona_alphas: list[float] | None = None
    """strengths of the persona vector on the frontier, in multiples of it (default
    0.5,1,2,4; 1,4 with --fast)"""
    sae_steps: int | None = None
    """steps of the SAE the full demo trains (default: the world's SAE recipe's)"""
    sae_width: int | None = None
    """latents of the SAE the full demo trains (default: the recipe's)"""
    sae_k: int | None = None
    """active latents per token of the SAE the full demo trains (default: the recipe's)"""
    sae_batch_size: int | None = None
    """activation rows per step of the SAE the full demo trains (default: the recipe's)"""
    sae: str | None = None
    """an SAE folder to use instead of training one or the shipped one"""
    device: str = "cpu"
    """cpu, cuda or auto"""
    threads: int | None = 1
    """CPU threads torch uses during the demo, restored after (0: torch's default); the shipped
    models are tiny, so one thread is as fast as many on an idle machine and much faster on a
    busy one"""
    force: bool = False
    """rerun every step even when its output is current"""
    quiet: bool = False
    """no progress bars"""
    batch_size: int = 16
    """prompts per generation batch"""

    def __post_init__(self) -> None:
        fast = self.fast
        if self.seeds is None:
            self.seeds = [0] if fast else [0, 1]
        if self.per_category is None:
            self.per_category = 8 if fast else 24
        if self.steer_per_category is None:
            self.steer_per_category = 4 if fast else 8
        if self.alphas is None:
            self.alphas = [0.0, 0.5, 1.0] if fast else [0.0, 0.25, 0.5, 1.0, 2.0]
        if self.ablate_scales is None:
            self.ablate_scales = [0.0, 1.0] if fast else [0.0, 0.5, 1.0]
        if self.samples_per_item is None:
            self.samples_per_item = 2 if fast else 4
        if self.n_random is None:
            self.n_random = 2 if fast else 19
        if self.persona_random is None:
            self.persona_random = 2 if fast else 19
        if self.persona_alphas is None:
            self.persona_alphas = [1.0, 4.0] if fast else [0.5, 1.0, 2.0, 4.0]
        if self.threads == 0:
            self.threads = None
        if not self.seeds:
            raise VSFAError("--seeds: give at least one seed")
        for name in AT_LEAST_ONE:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise VSFAError(f"--{name.replace('_', '-')} must be at least 1")
        if self.samples_per_item < 0 or (self.threads is not None and self.threads < 0):
            raise VSFAError("--samples-per-item and --threads must be 0 or more")

    def settings(self) -> dict[str, Any]:
        return asdict(self)

    def p_floors(self) -> dict[str, float]:
        """The smallest rank p each random control can give: 1 / (sets + 1)."""
        return {"steering": 1 / (self.n_random + 1), "persona": 1 / (self.persona_random + 1)}
