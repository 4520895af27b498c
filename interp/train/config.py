"""The typed configuration of one fine-tuning run (``vsfa train``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from interp.errors import VSFAError

Method = Literal["lora", "full", "vlguard", "none"]
METHODS: tuple[str, ...] = ("lora", "full", "vlguard", "none")

# Learning rates that work for each kind of update when none is given.
DEFAULT_LR = {"lora": 2e-4, "vlguard": 2e-4, "full": 2e-5, "none": 0.0}

# Fields that do not change the trained weights (left out of the resume / skip key).
NON_RESULT_FIELDS = ("out", "quiet", "save_every", "log_every", "overwrite", "threads")


@dataclass
class TrainConfig:
    """Everything that decides a fine-tuning run.

    Attributes:
        model: base model (hub id or local folder).
        data: VQA JSONL (``lora``/``full``) or VLGuard-format ``train.json`` (``vlguard``).
        out: run folder: ``adapter/`` or ``model/``, ``manifest.json``, ``loss_curve.json``,
            ``checkpoints/`` while training.
        method: ``lora`` (VSFA with a LoRA adapter), ``full`` (VSFA, all language-model
            weights), ``vlguard`` (supervised safety fine-tuning with LoRA on VLGuard data),
            ``none`` (no training; a manifest that names the base model).
        lora_r, lora_alpha, lora_dropout: LoRA shape.
        lora_targets: module names inside the language model (default: the family's).
        lr: peak learning rate (default per method, :data:`DEFAULT_LR`).
        epochs, max_steps: length; ``max_steps`` (optimizer steps) wins when set.
        batch_size, grad_accum: micro-batch size and micro-batches per optimizer step.
        warmup_ratio, weight_decay, max_grad_norm, scheduler: optimisation details.
        seed: seeds LoRA initialisation, data order, dropout and the ``limit`` subset.
        limit: train on a seeded random subset of this many records.
        image_root: folder the VLGuard ``image`` paths are relative to (default: the JSON's).
        system: optional system prompt used for every training conversation.
        max_length: drop examples longer than this many tokens (None keeps all).
        gradient_checkpointing: trade compute for memory on large models.
        device, dtype: ``auto`` picks CUDA + bfloat16 when there is a GPU.
        save_every: checkpoint every N optimizer steps (0: only at the end).
        overwrite: discard an existing run folder made with other arguments.
        threads: CPU threads for this run (restored afterwards); on a shared or busy machine
            1 is often much faster than the default, which oversubscribes the cores.
    """

    model: str
    data: str | None
    out: str
    method: str = "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] | None = None
    lr: float | None = None
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 4
    grad_accum: int = 1
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    scheduler: str = "linear"
    seed: int = 0
    limit: int | None = None
    image_root: str | None = None
    system: str | None = None
    max_length: int | None = None
    gradient_checkpointing: bool = False
    device: str = "auto"
    dtype: str = "auto"
    save_every: int = 50
    log_every: int = 1
    quiet: bool = False
    overwrite: bool = False
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise VSFAError(f"--method {self.method!r}: expected one of {', '.join(METHODS)}")
        if self.method != "none" and not self.data:
            raise VSFAError(f"--method {self.method} needs --data")
        for name in ("lora_r", "lora_alpha", "epochs", "batch_size", "grad_accum", "log_every"):
            if getattr(self, name) < 1:
                raise VSFAError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("max_steps", "limit", "max_length", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise VSFAError(f"--{name.replace('_', '-')} must be at least 1")
        if self.save_every < 0:
            raise VSFAError("--save-every must be 0 (only at the end) or more")
        if not 0 <= self.lora_dropout < 1:
            raise VSFAError("--lora-dropout must be in [0, 1)")
        if not 0 <= self.warmup_ratio < 1:
            raise VSFAError("--warmup-ratio must be in [0, 1)")
        if self.lora_targets and self.method not in ("lora", "vlguard"):
            raise VSFAError(
                f"--lora-targets applies to lora and vlguard, not --method {self.method}"
            )
        if self.lr is not None and self.lr <= 0:
            raise VSFAError("--lr must be positive")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    @property
    def uses_lora(self) -> bool:
        return self.method in ("lora", "vlguard")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def result_dict(self) -> dict[str, Any]:
        """The fields that decide the trained weights (for resume and skip checks)."""
        data = {k: v for k, v in asdict(self).items() if k not in NON_RESULT_FIELDS}
        data["lr"] = self.learning_rate
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise VSFAError(f"unknown training options {unknown}; known: {sorted(known)}")
        return cls(**data)
