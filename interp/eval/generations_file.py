"""The generations file on disk: reading it back after a crash, appending whole batches, and
the setup check of its ``.meta.json`` sidecar (see :mod:`interp.eval.generation`)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from interp.artifacts import (
    append_durably,
    json_sha256,
    read_json,
    write_json_atomic,
    write_text_atomic,
)
from interp.errors import VSFAError


def meta_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.stem + ".meta.json")


def read_generations(out_path: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete records of a generations file; a torn last line (crash mid-write) is
    dropped, a record written twice (same key and sample) is kept once, and the file is
    repaired."""
    path = Path(out_path)
    if not path.exists():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except UnicodeDecodeError as error:
        raise VSFAError(
            f"{path} is not UTF-8 text (byte {error.start}); use another --out or --overwrite"
        ) from None
    records: list[dict[str, Any]] = []
    kept: list[str] = []
    seen: set[tuple[Any, Any]] = set()
    good = 0
    for line in lines:
        if not line.endswith("\n"):
            break
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if not isinstance(record, dict) or "key" not in record:
            break
        good += 1
        identity = (record["key"], record.get("sample", 0))
        if identity in seen:
            continue
        seen.add(identity)
        records.append(record)
        kept.append(line)
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(kept))
    return records


def append_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Append ``records`` to ``path`` in one durable write (one JSON line each)."""
    append_durably(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def _changed(before: Any, after: Any, prefix: str = "") -> list[str]:
    """The dotted names of the settings that differ between two fingerprints."""
    if isinstance(before, dict) and isinstance(after, dict):
        names: list[str] = []
        for key in sorted({*before, *after}):
            names += _changed(before.get(key), after.get(key), f"{prefix}{key}.")
        return names
    return [] if before == after else [prefix.rstrip(".")]


def _at(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def check_setup(
    out_path: Path, fingerprint: dict[str, Any], overwrite: bool, quiet: bool = False
) -> None:
    """Refuse to resume ``out_path`` made from another setup (one line naming what changed);
    start it again when only the model's or images' content changed, or on ``overwrite``;
    then record ``fingerprint`` in its ``.meta.json``."""
    meta = meta_path(out_path)
    key = json_sha256(fingerprint)
    if out_path.exists() and meta.exists() and not overwrite:
        existing = read_json(meta)
        if existing.get("key") != key:
            before = existing.get("setup") or {}
            changed = _changed(before, fingerprint)
            # made from other weights or images, or by a version that did not record them
            if "inputs" not in before or all(name.startswith("inputs") for name in changed):
                if not quiet:
                    print(
                        f"{out_path}: the model or images changed since these generations "
                        "were made (or it does not record them); generating again",
                        file=sys.stderr,
                    )
                overwrite = True
            else:
                top = sorted({name.split(".")[0] for name in changed})
                detail = "; ".join(
                    f"{name}: {_at(before, name)!r} -> {_at(fingerprint, name)!r}"
                    for name in changed[:3]
                    if not name.startswith("inputs")
                )
                raise VSFAError(
                    f"{out_path} holds generations from a different setup (changed: "
                    f"{', '.join(top) or 'unknown'}); {detail}; use another --out folder or "
                    "--overwrite"
                )
    elif out_path.exists() and out_path.stat().st_size > 0 and not overwrite:
        raise VSFAError(
            f"{out_path} exists without {meta.name}; cannot tell how it was made. Use another "
            "--out folder or --overwrite"
        )
    if overwrite:
        for path in (meta, out_path):
            if path.exists():
                path.unlink()
    write_json_atomic(meta, {"key": key, "setup": fingerprint})
