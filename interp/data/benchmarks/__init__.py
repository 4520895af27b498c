"""Benchmark loaders for local copies of public VLM safety benchmarks.

Importing this package registers every loader (``mmsafety``, ``mmsafety-sd-typo``, ``figstep``,
``figstep-tiny``, ``spavl``, ``vlguard``, ``mossbench``, ``mmvet``, ``jsonl``) in
:data:`interp.data.records.BENCHMARKS`; plug-ins add theirs through the ``interp.plugins`` entry
point. :func:`load_benchmark` is the one entry point: it applies per-category seeded subsampling
and checks the result (no empty benchmark, no missing images); :func:`load_benchmarks` reads
several ``--bench`` specs at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from interp.data.benchmarks import figstep, mmsafety, mmvet, mossbench, spavl, vlguard  # noqa: F401
from interp.data.benchmarks.common import (
    cache_root,
    check_images_exist,
    require_path,
    subsample_per_category,
)
from interp.data.records import BENCHMARKS, BenchmarkItem
from interp.errors import VSFAError

__all__ = [
    "BENCHMARKS",
    "cache_root",
    "load_benchmark",
    "load_benchmarks",
    "parse_bench_spec",
    "subsample_per_category",
]


def parse_bench_spec(spec: str) -> tuple[str, str | None]:
    """``"name=PATH"`` -> ``(name, PATH)``; ``"name"`` -> ``(name, None)``."""
    name, sep, path = spec.partition("=")
    name = name.strip()
    if not name:
        raise VSFAError(f"--bench {spec!r}: expected NAME=PATH or NAME")
    if sep and not path.strip():
        raise VSFAError(f"--bench {spec!r}: the path after '=' is empty")
    return name, (path.strip() or None)


def load_benchmark(
    name: str, path: str | os.PathLike | None, *, per_category: int | None = None, seed: int = 0
) -> list[BenchmarkItem]:
    """Items of benchmark ``name`` read from ``path``, subsampled per category with ``seed``."""
    loader = BENCHMARKS.get(name)
    items = list(loader(path))
    if not items:
        raise VSFAError(f"benchmark {name} at {path} holds no items")
    keys = [item.key for item in items]
    if len(set(keys)) != len(keys):
        duplicate = next(k for k in keys if keys.count(k) > 1)
        raise VSFAError(f"benchmark {name} at {path} has duplicate item id {duplicate!r}")
    items = subsample_per_category(items, per_category, seed)
    check_images_exist(items, name)
    return items


def load_benchmarks(
    specs: Sequence[str], per_category: int | None = None, seed: int = 0
) -> list[BenchmarkItem]:
    """Items of several ``--bench NAME[=PATH]`` specs, refusing benchmarks that share items."""
    items: list[BenchmarkItem] = []
    seen: set[str] = set()
    for spec in specs:
        name, path = parse_bench_spec(spec)
        loaded = load_benchmark(name, path, per_category=per_category, seed=seed)
        repeated = seen & {item.key for item in loaded}
        if repeated:
            raise VSFAError(
                f"--bench {spec} repeats items of another --bench (e.g. {min(repeated)})"
            )
        seen.update(item.key for item in loaded)
        items.extend(loaded)
    return items


@BENCHMARKS.register("jsonl")
def jsonl_benchmark(path: str | os.PathLike | None = None) -> list[BenchmarkItem]:
    """A custom benchmark: one BenchmarkItem JSON object per line (benchmark, id, category,
    image_path, prompt, kind[, reference, meta]); relative image paths resolve beside the file."""
    file = require_path(path, "jsonl", "a .jsonl file of benchmark items")
    if file.is_dir():
        raise VSFAError(f"jsonl benchmark {file} is a folder; expected a .jsonl file")
    items = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if data.get("image_path") and not Path(data["image_path"]).is_absolute():
                data["image_path"] = str(file.parent / data["image_path"])
            data.setdefault("benchmark", file.stem)
            items.append(BenchmarkItem.from_dict(data))
        except (json.JSONDecodeError, TypeError, AttributeError) as error:
            raise VSFAError(f"{file} line {number}: not a benchmark item ({error})") from None
    return items
