"""The one record type every benchmark loader yields, and the registry of benchmark loaders."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from interp.errors import VSFAError
from interp.registry import Registry

Kind = Literal["harmful", "benign"]


@dataclass(frozen=True)
class BenchmarkItem:
    """One evaluation prompt.

    ``kind`` is ``harmful`` (attack success is measured) or ``benign`` (over-refusal, helpfulness
    and, where ``reference`` is set, capability are measured). ``image_path`` is ``None`` for
    text-only items. ``meta`` carries benchmark-specific fields (image type, sub-category, the
    ground truth of a synthetic benchmark ...).
    """

    benchmark: str
    id: str
    category: str
    image_path: str | None
    prompt: str
    kind: Kind
    reference: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("harmful", "benign"):
            raise VSFAError(f"item {self.benchmark}/{self.id}: kind must be harmful or benign")

    @property
    def key(self) -> str:
        """Unique key of the item across benchmarks (used for resume)."""
        return f"{self.benchmark}/{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkItem:
        return cls(**data)


BenchmarkLoader = Callable[..., Iterable[BenchmarkItem]]
BENCHMARKS: Registry[BenchmarkLoader] = Registry("benchmark")
"""Benchmark loaders by name: ``@BENCHMARKS.register(NAME)`` makes one available as
``--bench NAME=PATH``; plug-ins register theirs through the ``interp.plugins`` entry point."""
