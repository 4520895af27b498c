"""The one record type every benchmark loader yields, and a registry of benchmark loaders."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from interp.errors import VSFAError

Kind = Literal["harmful", "benign"]


@dataclass(frozen=True)
class BenchmarkItem:
    """One evaluation prompt.

    ``kind`` is ``harmful`` (attack success is measured) or ``benign`` (over-refusal, helpfulness
    and, where ``reference`` is set, capability are measured). ``image_path`` is ``None`` for
    text-only items. ``meta`` carries benchmark-specific fields (image type, sub-category, the
    organism's ground truth ...).
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
BENCHMARKS: dict[str, BenchmarkLoader] = {}


def register_benchmark(name: str) -> Callable[[BenchmarkLoader], BenchmarkLoader]:
    """Decorator: make a loader available as ``--bench NAME=PATH``."""

    def decorate(loader: BenchmarkLoader) -> BenchmarkLoader:
        BENCHMARKS[name] = loader
        return loader

    return decorate


def get_benchmark_loader(name: str) -> BenchmarkLoader:
    try:
        return BENCHMARKS[name]
    except KeyError:
        known = ", ".join(sorted(BENCHMARKS)) or "(none registered)"
        raise VSFAError(f"unknown benchmark {name!r}; known benchmarks: {known}") from None
