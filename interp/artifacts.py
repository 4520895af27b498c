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
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import interp

MANIFEST = "manifest.json"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


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
