"""How ``vsfa sae train`` trains an SAE: :class:`SAETrainConfig` (no heavy imports)."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from interp.cache.config import NORMALIZE, Normalize
from interp.errors import VSFAError

Arch = Literal["topk", "batchtopk", "jumprelu", "standard"]
Logger = Literal["none", "tensorboard", "wandb"]
ARCHS: tuple[str, ...] = typing.get_args(Arch)
LOGGERS: tuple[str, ...] = typing.get_args(Logger)


def listed(value: Any) -> list[Any]:
    """A field that takes one value or several, as a list (``None``: empty)."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass
class SAETrainConfig:
    """How to train one SAE on cached activations."""

    acts: list[str]
    """activation folders, comma-separated or repeated (base and tuned together for diffing)"""
    out: str
    """output folder, e.g. sae_checkpoints/NAME"""
    hook_name: str | list[str] | None = None
    """cached hook (default: the folders' only hook); several (--hooks A,B) train one SAE each
    from one pass over the activations"""
    arch: Arch = "topk"
    """SAE architecture (sae_lens's)"""
    width: int | list[int] = 4096
    """number of latents (d_sae); several (512,2048) train one SAE each"""
    k: int | list[int] = 32
    """active latents per token (topk) or on average (batchtopk); several train one SAE each"""
    lr: float = 2e-4
    """Adam learning rate"""
    steps: int | None = None
    """training steps (default: one epoch)"""
    tokens: int | None = None
    """training rows instead of --steps (converted to steps of --batch-size)"""
    batch_size: int = 4096
    """rows per step"""
    buffer_rows: int = 262144
    """shuffle buffer of the activation stream, in rows (bounds memory)"""
    device: str = "auto"
    """cpu, cuda or auto"""
    seed: int = 0
    """initialisation and shuffling seed"""
    normalize: Normalize = "none"
    """scale rows to mean squared norm d_model while training (expected_average_only_in; folded
    back into the saved SAE)"""
    l1_coefficient: float = 1.0
    """standard: L1 sparsity penalty"""
    l0_coefficient: float = 1.0
    """jumprelu: L0 sparsity penalty"""
    coefficient_warm_up_steps: int = 0
    """steps of linear warm-up of the sparsity penalty"""
    lr_warm_up_steps: int = 0
    """steps of linear learning-rate warm-up (sae_lens's scheduler)"""
    lr_decay_steps: int = 0
    """steps of learning-rate decay to 0 at the end (sae_lens's scheduler)"""
    dead_feature_window: int = 1000
    """steps without firing after which a latent counts as dead (the TopK auxiliary loss)"""
    checkpoint_every: int = 0
    """save a resumable checkpoint every N steps (0: never)"""
    fast_step: bool = True
    """the sparse TopK/BatchTopK step (off: sae_lens's own step)"""
    distribute_latents: bool = False
    """with several processes (torchrun), topk only: each process holds a slice of the latents
    and sees the whole batch (for SAEs too wide for one device)"""
    eval_rows: int = 16384
    """activation rows for the reconstruction metrics"""
    eval_prompts: int = 16
    """prompts spliced through the model for CE/KL (0: skip)"""
    log: Logger = "none"
    """where training curves go besides metrics.json"""
    overwrite: bool = False
    """start over when --out holds a checkpoint made with other settings (else refused)"""
    quiet: bool = False
    """no progress bar"""
    extra: dict[str, Any] = field(default_factory=dict)
    """further fields of the sae_lens training config, as JSON (e.g. {"aux_loss_coefficient":
    0.5})"""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a :class:`VSFAError` naming the option for a value no run can use."""
        if self.arch not in ARCHS:
            raise VSFAError(f"--arch {self.arch!r}: expected one of {', '.join(ARCHS)}")
        widths, ks, hooks = listed(self.width), listed(self.k), listed(self.hook_name)
        if min(widths, default=0) < 1 or min(ks, default=0) < 1 or self.batch_size < 1:
            raise VSFAError("--width, --k and --batch-size must be at least 1")
        for name, values in (("hooks", hooks), ("width", widths), ("k", ks)):
            if len(set(values)) < len(values):
                raise VSFAError(f"--{name} {values}: each value at most once")
        if len(ks) > 1 and self.arch not in ("topk", "batchtopk"):
            raise VSFAError(f"--k with several values needs --arch topk or batchtopk ({self.arch})")
        if self.arch in ("topk", "batchtopk") and max(ks) > min(widths):
            raise VSFAError(f"--k {max(ks)} is larger than --width {min(widths)}")
        if self.distribute_latents and self.arch != "topk":
            raise VSFAError(f"--distribute-latents trains --arch topk only (not {self.arch})")
        if self.distribute_latents and self.several:
            raise VSFAError("--distribute-latents trains one SAE: give one hook, width and k")
        if self.log not in LOGGERS:
            raise VSFAError(f"--log {self.log!r}: expected one of {', '.join(LOGGERS)}")
        if self.normalize not in NORMALIZE:
            raise VSFAError(f"--normalize {self.normalize!r}: expected one of {NORMALIZE}")
        if self.steps is not None and self.tokens is not None:
            raise VSFAError("give --steps or --tokens, not both")
        for name in ("steps", "tokens", "buffer_rows", "eval_rows", "dead_feature_window"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise VSFAError(f"--{name.replace('_', '-')} must be at least 1")
        for name in (
            "checkpoint_every", "eval_prompts", "coefficient_warm_up_steps", "lr_warm_up_steps",
            "lr_decay_steps",
        ):  # fmt: skip
            if getattr(self, name) < 0:
                raise VSFAError(f"--{name.replace('_', '-')} must be at least 0")

    @property
    def several(self) -> bool:
        """Whether this trains several SAEs (several hooks, widths or k values)."""
        return max(len(listed(self.hook_name)), len(listed(self.width)), len(listed(self.k))) > 1

    def single(self) -> SAETrainConfig:
        """This config as one SAE's, one-element lists as the scalars a single run records;
        several SAEs are refused (``vsfa sae train`` and :func:`interp.sae.multi.train_saes`
        train them)."""
        if self.several:
            raise VSFAError(
                f"{self.out}: the hooks, widths or k values list several SAEs; train them with "
                "`vsfa sae train` or interp.sae.multi.train_saes"
            )
        hooks = listed(self.hook_name)
        return replace(
            self, hook_name=hooks[0] if hooks else None, width=listed(self.width)[0],
            k=listed(self.k)[0],
        )  # fmt: skip

    def total_steps(self, rows: int) -> int:
        """Steps to train on ``rows`` activation rows: ``steps``, ``tokens`` or one epoch."""
        if self.steps is not None:
            return self.steps
        if self.tokens is not None:
            return max(1, math.ceil(self.tokens / self.batch_size))
        return max(1, math.ceil(rows / self.batch_size))  # default: one epoch
