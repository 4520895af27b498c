"""Artifacts on disk: atomic writes, content hashes and stage manifests.

Every stage writes its outputs through these helpers, so a crash leaves either the old file or the
new one (write to a temporary name in the same folder, then ``os.replace``), and every output
folder carries a ``manifest.json`` that says what produced it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import interp

MANIFEST = "manifest.json"

on_write: Callable[[str, Path], None] | None = None
"""Called as ``on_write(kind, path)`` before every atomic rename (``"rename"``) and every append
(``"append"``) of a stage's files; fault-injection tests raise here to stop a run at that point."""

_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{12}(\.tmp|\.old)?$")


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read without changing it for longer than the call)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file under the user's umask."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode ``mkdir`` gives a new folder under the user's umask."""
    return 0o777 & ~current_umask()


def _temporary_name(target: Path, suffix: str) -> Path:
    return target.parent / f".{target.name}.{secrets.token_hex(6)}{suffix}"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    The file gets the mode the user's umask gives a new file (0644 under umask 022), not the
    0600 of :func:`tempfile.mkstemp`, so colleagues who may read the folder may read it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _temporary_name(target, ".tmp")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:  # pragma: no cover - a 48-bit name collision
            continue
    try:
        yield tmp
        os.chmod(tmp, file_mode())  # a library may have replaced the file we made
        replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def replace(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """``os.replace`` (atomic on one filesystem), announced to :data:`on_write` first."""
    if on_write is not None:
        on_write("rename", Path(target))
    os.replace(source, target)


def append_durably(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` in one write, flushed and fsynced (announced to :data:`on_write`)."""
    if on_write is not None:
        on_write("append", Path(path))
    data = text.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_orphans(folder: str | os.PathLike, subfolders: Sequence[str] = ()) -> list[Path]:
    """Remove the temporary files and folders (``.name.<hex>.tmp``, ``.name.<hex>``) that a
    killed writer left in ``folder`` and its ``subfolders``; call it holding the folder's lock
    (:func:`interp.locks.folder_lock`), so no live writer owns them. Returns what was removed."""
    removed = []
    root = Path(folder)
    for place in (root, *(root / name for name in subfolders)):
        if not place.is_dir():
            continue
        for path in place.iterdir():
            if not _TEMPORARY.match(path.name):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def remove_outputs(folder: str | os.PathLike, names: Sequence[str]) -> None:
    """Remove a stage's outputs ``names`` in ``folder``, the manifest first: a kill half-way
    leaves a folder that no check takes for finished."""
    root = Path(folder)
    for name in (MANIFEST, *(n for n in names if n != MANIFEST)):
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


@contextmanager
def stage_folder(folder: str | os.PathLike, subfolders: Sequence[str] = ()) -> Iterator[Path]:
    """Hold ``folder``'s writer lock and clear the orphans of earlier killed runs in it."""
    from interp.locks import folder_lock

    with folder_lock(folder):
        remove_orphans(folder, subfolders)
        yield Path(folder)


def make_temporary_dir(target: str | os.PathLike) -> Path:
    """A new empty folder beside ``target`` (to fill, then rename onto it), with the mode
    ``mkdir`` gives under the user's umask, not :func:`tempfile.mkdtemp`'s 0700."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _temporary_name(target, "")
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:  # pragma: no cover - a 48-bit name collision
            continue


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty folder beside ``path``; on success it replaces ``path`` in one rename
    (an old ``path`` is moved aside first and removed after), so a reader sees the old folder
    or the new one, never a mix. On failure the temporary folder is removed."""
    target = Path(path)
    tmp = make_temporary_dir(target)
    try:
        yield tmp
        old = None
        if target.exists():
            old = _temporary_name(target, ".old")
            os.replace(target, old)
        replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    from interp.errors import VSFAError

    path = Path(path)
    if not path.exists():
        raise VSFAError(f"{path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise VSFAError(f"{path} is not valid JSON: {error}") from None


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def json_sha256(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def environment_info() -> dict[str, str]:
    import torch
    import transformers

    return {
        "interp": interp.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def make_manifest(
    stage: str,
    config: dict[str, Any],
    *,
    inputs: dict[str, str] | None = None,
    seed: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A stage manifest: what ran, with which config, on which inputs (hashes), seed, versions."""
    return {
        "stage": stage,
        "config": config,
        "inputs": inputs or {},
        "seed": seed,
        "versions": environment_info(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }


def manifest_key(manifest: dict[str, Any]) -> str:
    """Hash of what decides a stage's output (stage, config, inputs, seed), for skip checks."""
    return json_sha256({k: manifest.get(k) for k in ("stage", "config", "inputs", "seed")})


def output_is_current(out_dir: str | os.PathLike, manifest: dict[str, Any]) -> bool:
    """True when ``out_dir`` already holds a finished output made from the same manifest key."""
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        return False
    try:
        existing = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    return existing.get("complete", False) and manifest_key(existing) == manifest_key(manifest)
