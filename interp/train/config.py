"""The typed configuration of one fine-tuning run (``vsfa train``)."""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from interp.errors import VSFAError
from interp.models.placement import check_placement
from interp.registry import Registry

Method = Literal["lora", "full", "vlguard", "none"]
METHODS: tuple[str, ...] = typing.get_args(Method)

# ``transformers.get_scheduler`` schedules that need nothing but the warm-up and total steps.
Scheduler = Literal[
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt",
]  # fmt: skip
SCHEDULERS: tuple[str, ...] = typing.get_args(Scheduler)

# Learning rates that work for each kind of update when none is given.
DEFAULT_LR = {"lora": 2e-4, "vlguard": 2e-4, "full": 2e-5, "none": 0.0}

# Fields that do not change the trained weights (left out of the resume / skip key).
NON_RESULT_FIELDS = (
    "out", "quiet", "save_every", "log_every", "overwrite", "threads", "device_map", "max_memory",
    "monitor", "monitor_every", "monitor_bench", "monitor_judge", "monitor_items", "monitor_sample",
)  # fmt: skip

# Fields that must be whole numbers of at least 1 (``None`` allowed for the optional ones).
AT_LEAST_ONE = (
    "lora_r", "lora_alpha", "epochs", "batch_size", "grad_accum", "log_every", "monitor_items",
)  # fmt: skip
AT_LEAST_ONE_OR_NONE = ("max_steps", "limit", "max_length", "threads", "monitor_every")


@dataclass
class TrainConfig:
    """Everything that decides a fine-tuning run."""

    model: str
    """base model: hub id or local folder"""
    data: str | None = field(default=None, kw_only=True)
    """VQA JSONL (lora, full) or VLGuard-format train.json (vlguard); not needed by none"""
    out: str
    """run folder: adapter/ or model/, manifest.json, loss_curve.json, checkpoints/ while
    training"""
    method: Method = "lora"
    """lora (VSFA with a LoRA adapter), full (VSFA, all language-model weights), vlguard
    (supervised safety fine-tuning with LoRA on VLGuard data), none (no training: a manifest
    naming the base model)"""
    lora_r: int = 16
    """LoRA rank"""
    lora_alpha: int = 32
    """LoRA scaling numerator (the update is scaled by alpha / r)"""
    lora_dropout: float = 0.05
    """dropout on the LoRA input, in [0, 1)"""
    lora_targets: list[str] | None = None
    """comma-separated module names inside the language model (default: the family's)"""
    lr: float | None = None
    """peak learning rate (default: 2e-4 for lora and vlguard, 2e-5 for full)"""
    epochs: int = 1
    """passes over the data (ignored when --max-steps is set)"""
    max_steps: int | None = None
    """optimizer steps (wins over --epochs)"""
    batch_size: int = 4
    """examples per micro-batch"""
    grad_accum: int = 1
    """micro-batches per optimizer step"""
    warmup_ratio: float = 0.03
    """fraction of the steps spent warming the learning rate up, in [0, 1)"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    max_grad_norm: float = 1.0
    """clip the gradient norm of each optimizer step to this"""
    scheduler: Scheduler = "linear"
    """learning-rate schedule after the warm-up (transformers' get_scheduler)"""
    seed: int = 0
    """seeds LoRA initialisation, data order, dropout and the --limit subset"""
    limit: int | None = None
    """train on a seeded random subset of this many records"""
    image_root: str | None = None
    """folder the VLGuard image paths are relative to (default: the JSON's folder)"""
    system: str | None = None
    """system prompt of every training conversation"""
    max_length: int | None = None
    """drop examples longer than this many tokens (default: keep all)"""
    gradient_checkpointing: bool = False
    """trade compute for memory on large models"""
    device: str = "auto"
    """cpu, cuda, cuda:N or auto (CUDA when there is a GPU)"""
    dtype: str = "auto"
    """float32, bfloat16 or auto (bfloat16 on a GPU)"""
    device_map: str | None = None
    """place the model over devices instead of moving it to --device: auto (GPUs, then CPU,
    then disk), balanced, sequential, one device, MODULE=DEVICE,... or a .json map"""
    max_memory: str | None = None
    """per-device caps for --device-map auto, e.g. 0=20GiB,cpu=60GiB (what does not fit is
    offloaded to disk)"""
    save_every: int = 50
    """checkpoint every N optimizer steps (0: only at the end)"""
    log_every: int = 1
    """show the loss on the progress bar every N optimizer steps"""
    quiet: bool = False
    """no progress bars"""
    overwrite: bool = False
    """replace a run folder made with other arguments"""
    threads: int | None = None
    """CPU threads for this run (restored afterwards); on a shared or busy machine 1 is often
    much faster than the default, which oversubscribes the cores"""
    monitor: str | None = None
    """persona folder (vsfa persona extract) to watch during training: the projection onto its
    persona vector, its selected latents' activation and the probe items' ASR and capability
    go to monitor.jsonl at the start, every --monitor-every steps and at the end"""
    monitor_every: int | None = None
    """monitor every N optimizer steps (default: at every --save-every checkpoint)"""
    monitor_bench: str | None = None
    """benchmark spec (NAME or NAME=PATH) whose items give the monitor's ASR and capability
    (default: none, only the persona signals)"""
    monitor_judge: str = "keyword"
    """judge of the monitor's replies (a registered name); a judge naming its comply and refuse
    openings gets the exact teacher-forced comply share without sampling"""
    monitor_items: int = 32
    """probe items drawn (seeded) from each kind of --monitor-bench: harmful for ASR, items
    with a reference for capability"""
    monitor_sample: bool = False
    """sample replies for the monitor's ASR even when the judge names its openings"""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise VSFAError(f"--method {self.method!r}: expected one of {', '.join(METHODS)}")
        if self.method != "none" and not self.data:
            raise VSFAError(f"--method {self.method} needs --data")
        for name in AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise VSFAError(f"--{name.replace('_', '-')} must be at least 1")
        for name in AT_LEAST_ONE_OR_NONE:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise VSFAError(f"--{name.replace('_', '-')} must be at least 1")
        if self.save_every < 0:
            raise VSFAError("--save-every must be 0 (only at the end) or more")
        if not 0 <= self.lora_dropout < 1:
            raise VSFAError("--lora-dropout must be in [0, 1)")
        if not 0 <= self.warmup_ratio < 1:
            raise VSFAError("--warmup-ratio must be in [0, 1)")
        if self.weight_decay < 0:
            raise VSFAError("--weight-decay must be 0 or more")
        if not self.max_grad_norm > 0:
            raise VSFAError("--max-grad-norm must be positive")
        if self.scheduler not in SCHEDULERS:
            raise VSFAError(
                f"--scheduler {self.scheduler!r}: expected one of {', '.join(SCHEDULERS)}"
            )
        if self.lora_targets and self.method not in ("lora", "vlguard"):
            raise VSFAError(
                f"--lora-targets applies to lora and vlguard, not --method {self.method}"
            )
        if self.lr is not None and self.lr <= 0:
            raise VSFAError("--lr must be positive")
        check_placement(self.device_map, self.max_memory)
        if self.device_map and self.method == "full":
            raise VSFAError(
                "--device-map trains LoRA adapters only (--method lora or vlguard): full "
                "fine-tuning of a model split over devices or offloaded is not supported"
            )

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


StepCallback = Callable[[int, Any, int], None]
"""``callback(step, vlm, total_steps)``: called by the training loop before its first step and
after every optimizer step (``vlm.model`` is the model being trained)."""

TRAINING_MONITORS: Registry[Callable[[TrainConfig, Path], StepCallback]] = Registry(
    "training monitor"
)
"""Factories of the step callback that ``TrainConfig.monitor`` turns on (the monitor stage
registers ``persona`` when it is imported)."""


def step_monitors(config: TrainConfig, out: Path) -> list[StepCallback]:
    """The callbacks ``config.monitor`` asks for (none without it)."""
    if not config.monitor:
        return []
    if "persona" not in TRAINING_MONITORS:
        raise VSFAError("--monitor needs the monitor stage: import interp.monitor first")
    return [TRAINING_MONITORS.get("persona")(config, out)]
