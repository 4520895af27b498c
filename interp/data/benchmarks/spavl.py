"""SPA-VL test split (``harm``: harmful, ``help``: benign), stored as parquet.

Layout (the Hugging Face dataset folder)::

    PATH/test/harm*.parquet     columns image (bytes or {bytes, path} or a path), question,
    PATH/test/help*.parquet     class1, class2, class3

The Hub's converted layouts are read too: ``test/harm/0000.parquet``, ``test/help/...``
and ``evalharm/``, ``evalhelp/`` folders.

Images stored as bytes inside the parquet files are written once to the cache folder
(``$VSFA_CACHE/spavl/``), named by the hash of their bytes, so items carry an image path like
every other benchmark.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from interp.artifacts import atomic_path
from interp.data.benchmarks.common import Layout, cache_root
from interp.data.records import BENCHMARKS, BenchmarkItem
from interp.errors import VSFAError

NAME = "spavl"
LAYOUT = Layout(NAME, "test/harm*.parquet and test/help*.parquet")
COLUMNS = ("image", "question", "class1")
SPLITS = {"harm": "harmful", "help": "benign"}


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise VSFAError("reading SPA-VL needs pyarrow: pip install pyarrow") from None
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a bad file
        raise VSFAError(f"{NAME}: {path} is not a readable parquet file ({error})") from None
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise VSFAError(
            f"{NAME}: {path} lacks column(s) {', '.join(missing)}; expected image, question, "
            f"class1, class2, class3 (found {', '.join(table.column_names)})"
        )
    return table.to_pylist()


def _image_bytes_suffix(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".img"


def _materialise(value: Any, base: Path, where: str) -> str:
    """A path to the image of one row, writing embedded bytes to the cache when needed."""
    data: bytes | None = None
    rel: str | None = None
    if isinstance(value, dict):
        data = value.get("bytes")
        rel = value.get("path")
    elif isinstance(value, bytes | bytearray):
        data = bytes(value)
    elif isinstance(value, str):
        rel = value
    if data:
        digest = hashlib.sha256(data).hexdigest()[:32]
        target = cache_root() / "spavl" / f"{digest}{_image_bytes_suffix(data)}"
        if not target.exists():
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
        return str(target)
    if rel:
        candidate = Path(rel) if Path(rel).is_absolute() else base / rel
        if not candidate.exists():
            candidate = base.parent / rel
        if not candidate.exists():
            raise VSFAError(f"{NAME}: {where}: image {rel} is missing")
        return str(candidate)
    raise VSFAError(f"{NAME}: {where}: empty image field")


def _split_files(root: Path, test_dir: Path, split: str) -> list[Path]:
    """The parquet files of ``split`` in the first layout that has any."""
    candidates = (
        lambda: test_dir.glob(f"{split}*.parquet"),
        lambda: (test_dir / split).glob("*.parquet"),
        lambda: (root / f"eval{split}").rglob("*.parquet"),
    )
    for candidate in candidates:
        files = sorted(candidate())
        if files:
            return files
    return []


@BENCHMARKS.register(NAME)
def spavl(path: str | os.PathLike | None = None) -> list[BenchmarkItem]:
    """SPA-VL test: ``harm`` (harmful) and ``help`` (benign) image + question pairs."""
    root = LAYOUT.root(path)
    test_dir = root / "test" if (root / "test").is_dir() else root
    items: list[BenchmarkItem] = []
    found_any = False
    for split, kind in SPLITS.items():
        files = _split_files(root, test_dir, split)
        found_any = found_any or bool(files)
        index = 0
        for file in files:
            for row_number, row in enumerate(_read_parquet(file)):
                where = f"{file.name} row {row_number}"
                items.append(
                    BenchmarkItem(
                        benchmark=NAME,
                        id=f"{split}/{index}",
                        category=f"{split}/{row.get('class1') or 'unknown'}",
                        image_path=_materialise(row["image"], file.parent, where),
                        prompt=str(row["question"]),
                        kind=kind,  # type: ignore[arg-type]
                        meta={
                            "split": split,
                            "class2": row.get("class2"),
                            "class3": row.get("class3"),
                        },
                    )
                )
                index += 1
    if not found_any:
        raise VSFAError(
            f"SPA-VL folder {root} is not in the expected layout: no {LAYOUT.expected} under "
            f"{test_dir}"
        )
    return LAYOUT.done(items, root)
