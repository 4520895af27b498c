"""Content fingerprints of a stage's inputs, for "is this output current?" decisions.

A stage keys its output on what its inputs *hold*, not on their paths: a model or adapter
folder, a prompt or benchmark file, an SAE's weights, the images its items name. Hashing a
multi-gigabyte model folder on every run would be slow, so every hash is stored with the file's
size, modification time (ns) and inode (:class:`Fingerprints.stats`); a later run that is given
those stats back (from the stage's previous manifest) re-hashes only the files whose stats
changed. Within one process, a file is hashed at most once per stat.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from interp.artifacts import file_sha256, json_sha256

Stat = tuple[int, int, int]
"""``(size, mtime_ns, inode)`` of a file"""

_MEMO: dict[tuple[str, Stat], str] = {}


def _stat(path: Path) -> Stat:
    info = path.stat()
    return (info.st_size, info.st_mtime_ns, info.st_ino)


class Fingerprints:
    """Hashes files and folders, reusing the hashes of files whose stats are unchanged.

    Args:
        known: the :attr:`stats` recorded by an earlier run (``{path: [size, mtime_ns, inode,
            sha256]}``), e.g. read back from a stage's previous manifest.
    """

    def __init__(self, known: Mapping[str, Any] | None = None) -> None:
        self.known: dict[str, Any] = dict(known or {})
        self.stats: dict[str, list[Any]] = {}
        """``{absolute path: [size, mtime_ns, inode, sha256]}`` of every file hashed"""

    def file(self, path: str | os.PathLike) -> str:
        """The sha256 of a file's bytes (the fast path when its stats are unchanged)."""
        path = Path(path).absolute()
        name = str(path)
        stat = _stat(path)
        digest = _MEMO.get((name, stat))
        old = self.known.get(name)
        if digest is None and isinstance(old, list) and len(old) == 4 and tuple(old[:3]) == stat:
            digest = str(old[3])
        if digest is None:
            digest = file_sha256(path)
        _MEMO[(name, stat)] = digest
        self.stats[name] = [*stat, digest]
        return digest

    def folder(self, path: str | os.PathLike) -> str:
        """The hash of every file under a folder (relative names and content hashes); hidden
        temporary files (``.name.tmp``) are left out."""
        root = Path(path)
        entries = [
            (str(p.relative_to(root)), self.file(p))
            for p in sorted(root.rglob("*"))
            if p.is_file() and not _is_temporary(p)
        ]
        return json_sha256(entries)

    def path(self, path: str | os.PathLike | None) -> str | None:
        """A file's or folder's fingerprint; a string that names nothing on disk (a hub id)
        stands for itself; ``None`` stays ``None``."""
        if path is None:
            return None
        target = Path(path)
        if target.is_dir():
            return self.folder(target)
        if target.is_file():
            return self.file(target)
        return str(path)

    def paths(self, paths: Iterable[str | os.PathLike | None]) -> str:
        """One hash of several paths' fingerprints (in order), e.g. the images of the items."""
        return json_sha256([self.path(p) for p in paths])


def _is_temporary(path: Path) -> bool:
    """A temporary file of an atomic write, or a writer's lock file."""
    return path.name.startswith(".") and (path.name.endswith(".tmp") or path.name.endswith(".lock"))


def known_stats(manifest_path: str | os.PathLike) -> dict[str, Any]:
    """The file stats a previous manifest recorded (``input_files``), or none."""
    import json

    try:
        data = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    stats = data.get("input_files") if isinstance(data, dict) else None
    return stats if isinstance(stats, dict) else {}


def model_inputs(
    prints: Fingerprints, model: str | os.PathLike | None, adapter: str | os.PathLike | None
) -> dict[str, str | None]:
    """The ``model`` and ``adapter`` entries of a stage's ``inputs``: content fingerprints of
    local folders (a hub id stands for itself). ``adapter`` is the folder that holds the weights
    (:func:`interp.models.loading.resolve_run_dir`), not the run folder around it."""
    return {"model": prints.path(model), "adapter": prints.path(adapter)}
