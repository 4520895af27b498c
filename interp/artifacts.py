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
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import interp

MANIFEST = "manifest.json"


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
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


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
