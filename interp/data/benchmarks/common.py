"""Helpers shared by the benchmark loaders: finding files in a download, clear layout errors,
per-category seeded subsampling and a cache folder for images stored inside data files.

A loader holds one :class:`Layout` (its name and what its folder should hold) and makes every
check through it, so each error names the benchmark and the expected layout.
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.data.records import BenchmarkItem
from interp.errors import VSFAError
from interp.images import IMAGE_SUFFIXES


def require_path(path: str | os.PathLike | None, benchmark: str, expected: str) -> Path:
    """The benchmark's root folder (or file), or an error that says what the layout should be."""
    if path is None:
        raise VSFAError(
            f"benchmark {benchmark!r} needs a local folder: --bench {benchmark}=PATH, where PATH "
            f"holds {expected}"
        )
    root = Path(path).expanduser()
    if not root.exists():
        raise VSFAError(f"{benchmark} folder {root} does not exist (expected {expected})")
    return root


def find_first(root: Path, candidates: Sequence[str], benchmark: str, expected: str) -> Path:
    """The first of ``candidates`` (paths relative to ``root``) that exists."""
    for candidate in candidates:
        path = root / candidate if candidate else root
        if path.exists():
            return path
    tried = ", ".join(str(root / c) if c else str(root) for c in candidates)
    raise VSFAError(
        f"{benchmark} folder {root} is not in the expected layout: {expected} not found "
        f"(looked for {tried})"
    )


def read_json_file(path: Path, benchmark: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise VSFAError(f"{benchmark}: {path} is not valid JSON: {error}") from None
    except UnicodeDecodeError:
        raise VSFAError(f"{benchmark}: {path} is not UTF-8 text") from None


def read_csv_rows(path: Path, benchmark: str, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts, checking that the ``required`` columns are present."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except UnicodeDecodeError:
        raise VSFAError(f"{benchmark}: {path} is not UTF-8 text") from None
    missing = [c for c in required if c not in columns]
    if missing:
        raise VSFAError(
            f"{benchmark}: {path} lacks column(s) {', '.join(missing)}; expected columns "
            f"{', '.join(required)} (found {', '.join(columns) or 'none'})"
        )
    return rows


def require_fields(record: Any, fields: Sequence[str], where: str) -> None:
    if not isinstance(record, dict):
        raise VSFAError(f"{where}: expected an object, got {type(record).__name__}")
    missing = [f for f in fields if f not in record]
    if missing:
        raise VSFAError(f"{where}: missing field(s) {', '.join(missing)}")


def resolve_image(path: Path) -> Path | None:
    """``path`` if it exists, else the same stem with another image suffix (.png vs .jpg ...)."""
    if path.exists():
        return path
    for suffix in IMAGE_SUFFIXES:
        other = path.with_suffix(suffix)
        if other.exists():
            return other
    return None


def check_images_exist(items: Sequence[BenchmarkItem], benchmark: str) -> None:
    """One clear error for images referenced by a benchmark that are not on disk."""
    missing = [i for i in items if i.image_path is not None and not Path(i.image_path).exists()]
    if missing:
        first = missing[0]
        raise VSFAError(
            f"{benchmark}: {len(missing)} of {len(items)} referenced image(s) are missing, "
            f"e.g. {first.image_path} (item {first.id})"
        )


def check_not_empty(items: Sequence[BenchmarkItem], benchmark: str, root: Path) -> None:
    if not items:
        raise VSFAError(f"{benchmark}: {root} holds no benchmark items")


@dataclass(frozen=True)
class Layout:
    """One benchmark's on-disk layout: the checks its loader makes, each error naming it."""

    name: str
    """the benchmark's registered name, which starts every error"""
    expected: str
    """what the benchmark's folder holds, quoted when it does not"""

    def root(self, path: str | os.PathLike | None) -> Path:
        """The benchmark's root folder (or file); see :func:`require_path`."""
        return require_path(path, self.name, self.expected)

    def find(self, root: Path, candidates: Sequence[str], expected: str | None = None) -> Path:
        """The first of ``candidates`` under ``root`` that exists; see :func:`find_first`."""
        return find_first(root, candidates, self.name, expected or self.expected)

    def read_json(self, path: Path) -> Any:
        return read_json_file(path, self.name)

    def read_object(self, path: Path, keyed_by: str) -> dict[str, Any]:
        """A JSON file holding one object (``{key: record}``)."""
        data = self.read_json(path)
        if not isinstance(data, dict):
            raise VSFAError(f"{self.name}: {path} should be an object keyed by {keyed_by}")
        return data

    def read_csv(self, path: Path, required: Sequence[str]) -> list[dict[str, str]]:
        return read_csv_rows(path, self.name, required)

    def require_fields(self, record: Any, fields: Sequence[str], where: str) -> None:
        require_fields(record, fields, f"{self.name}: {where}")

    def image(self, path: Path, detail: str = "") -> Path:
        """``path`` or the same stem with another image suffix, else an error (``detail`` says
        which record wanted it)."""
        image = resolve_image(path)
        if image is None:
            raise VSFAError(f"{self.name}: image {path}{detail} is missing")
        return image

    def done(self, items: list[BenchmarkItem], root: Path) -> list[BenchmarkItem]:
        """``items``, checked not to be empty."""
        check_not_empty(items, self.name, root)
        return items


def subsample_per_category(
    items: Iterable[BenchmarkItem], per_category: int | None, seed: int = 0
) -> list[BenchmarkItem]:
    """At most ``per_category`` items of each category, drawn with ``seed``, in original order.

    The draw for one category does not depend on the other categories (each has its own
    generator seeded from ``seed`` and the category name), so adding a category elsewhere does
    not change which items are picked.
    """
    items = list(items)
    if per_category is None:
        return items
    if per_category < 1:
        raise VSFAError(f"--per-category must be at least 1, got {per_category}")
    by_category: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        by_category[item.category].append(index)
    keep: set[int] = set()
    for category, indices in by_category.items():
        if len(indices) <= per_category:
            keep.update(indices)
        else:
            rng = random.Random(f"{seed}:{category}")
            keep.update(rng.sample(indices, per_category))
    return [item for index, item in enumerate(items) if index in keep]


def cache_root() -> Path:
    """Where the workbench keeps derived files (``$VSFA_CACHE`` or ``~/.cache/vsfa``)."""
    return Path(os.environ.get("VSFA_CACHE", Path.home() / ".cache" / "vsfa")).expanduser()
