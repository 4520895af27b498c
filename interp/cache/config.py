"""What ``vsfa cache`` caches: :class:`CacheConfig` (no heavy imports, the CLI reads it)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from interp.errors import VSFAError
from interp.models.placement import check_placement

Positions = Literal["all", "decision", "last", "response", "image", "text"]
StorageDtype = Literal["float32", "bfloat16", "float16"]
Normalize = Literal["none", "expected_average_only_in"]
POSITIONS: tuple[str, ...] = typing.get_args(Positions)
POSITION_ALIASES: dict[str, str] = {"last": "decision"}
"""Other accepted names of a ``--positions`` value (``last`` is the decision position)."""
STORAGE_DTYPES: tuple[str, ...] = typing.get_args(StorageDtype)
NORMALIZE: tuple[str, ...] = typing.get_args(Normalize)
"""How :class:`~interp.cache.stream.ActivationStream` scales rows: ``none``, or
``expected_average_only_in`` (mean squared norm ``d_model``, as sae_lens does)."""


@dataclass
class CacheConfig:
    """What to cache: which model, which prompts, which hooks and tokens, where to."""

    model: str
    """hub id or local model folder"""
    prompts: str
    """benchmark spec NAME=PATH (or NAME), a VQA .jsonl, or a .txt (one prompt per line)"""
    hooks: list[str]
    """TransformerLens hook names (blocks.L.hook_resid_post), comma-separated or repeated"""
    out: str
    """activation folder to write"""
    adapter: str | None = None
    """PEFT adapter or training run folder"""
    positions: Positions = "all"
    """tokens to keep: all, decision (the last prompt token, which predicts the first reply token;
    'last' is accepted for it), response, image or text (the prompt's text tokens)"""
    shard_rows: int = 16384
    """rows per shard file"""
    dtype: StorageDtype = "float32"
    """storage dtype of the activations"""
    batch_size: int = 8
    """prompts per forward"""
    device: str = "auto"
    """cpu, cuda or auto"""
    model_dtype: str = "auto"
    """dtype the model runs in (auto: bfloat16 on a GPU, float32 on the CPU)"""
    device_map: str | None = None
    """place the model over devices instead of moving it to --device: auto (GPUs, then CPU,
    then disk), balanced, sequential, one device, MODULE=DEVICE,... or a .json map"""
    max_memory: str | None = None
    """per-device caps for --device-map auto, e.g. 0=20GiB,cpu=60GiB (what does not fit is
    offloaded to disk)"""
    limit: int | None = None
    """cache only the first N prompts"""
    system: str | None = None
    """system prompt"""
    quiet: bool = False
    """no progress bar"""
    overwrite: bool = False
    """replace a cache this run cannot continue (made with other options, or unfinished with
    another number of processes)"""

    def __post_init__(self) -> None:
        self.validate()

    @property
    def position_set(self) -> str:
        """The documented name of :attr:`positions` (an alias resolved)."""
        return POSITION_ALIASES.get(self.positions, self.positions)

    def validate(self) -> None:
        """Raise a :class:`VSFAError` naming the option for a value no run can use."""
        if self.positions not in POSITIONS:
            raise VSFAError(f"--positions {self.positions!r}: expected one of {POSITIONS}")
        if self.dtype not in STORAGE_DTYPES:
            raise VSFAError(f"--dtype {self.dtype!r}: expected one of {STORAGE_DTYPES}")
        if self.shard_rows < 1 or self.batch_size < 1:
            raise VSFAError("--shard-rows and --batch-size must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise VSFAError("--limit must be at least 1")
        if not self.hooks:
            raise VSFAError("--hooks: give at least one hook name")
        check_placement(self.device_map, self.max_memory)
