"""The run folder: its manifest (what decides the weights), making it ready, finishing it.

A run folder holds ``adapter/`` or ``model/``, ``manifest.json``, ``loss_curve.json`` and, while
training, ``checkpoints/``. Its manifest key covers the base model's fingerprint, the data's
hash, every field that changes the weights and the process count, so a finished run with the same
key is skipped and a checkpoint with the same key is resumed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from interp.artifacts import (
    MANIFEST,
    file_sha256,
    json_sha256,
    make_manifest,
    manifest_key,
    read_json,
    write_json_atomic,
)
from interp.errors import VSFAError
from interp.train.checkpoint import CHECKPOINTS, checkpoint_key, latest_checkpoint
from interp.train.config import TrainConfig

LOSS_CURVE = "loss_curve.json"


def _model_fingerprint(model: str) -> str:
    """Hash of a local model's config and weight files (names, sizes); the id for hub models."""
    path = Path(model)
    if not path.is_dir():
        return model
    files = sorted(p for p in path.iterdir() if p.is_file())
    listing = [(p.name, p.stat().st_size) for p in files]
    config = path / "config.json"
    return json_sha256(
        {"files": listing, "config": file_sha256(config) if config.exists() else None}
    )


def world_size() -> int:
    """Processes of a multi-GPU launch (``accelerate launch`` / ``torchrun``); 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def train_manifest(config: TrainConfig) -> dict[str, Any]:
    inputs = {"model": _model_fingerprint(config.model)}
    result = config.result_dict()
    if world_size() > 1:  # the data order and effective batch depend on the process count
        result["world_size"] = world_size()
    if config.data is not None:
        data = Path(config.data)
        if not data.is_file():
            raise VSFAError(f"--data {data} does not exist")
        inputs["data"] = file_sha256(data)
    return make_manifest("train", result, inputs=inputs, seed=config.seed)


def prepare_run_dir(out: Path, key: str, overwrite: bool) -> None:
    """Keep a folder holding this run (finished or checkpointed); clear one holding another run
    when ``overwrite``, else refuse."""
    manifest_path = out / MANIFEST
    # hidden files (a writer's lock, temporaries) and empty folders are no run's content
    stale = out.exists() and any(
        not p.name.startswith(".") and (p.is_file() or any(p.iterdir())) for p in out.iterdir()
    )
    if not stale:
        return
    checkpoint = latest_checkpoint(out)
    same = (checkpoint is not None and checkpoint_key(checkpoint) == key) or (
        manifest_path.exists() and manifest_key(read_json(manifest_path)) == key
    )
    if same:
        return
    if not overwrite:
        raise VSFAError(
            f"run folder {out} holds a run made with other arguments; pass --overwrite to "
            "replace it or choose another --out"
        )
    for name in ("adapter", "model", CHECKPOINTS, MANIFEST, LOSS_CURVE):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def finish_run(out: Path, manifest: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """Write the loss curve and the completed manifest; drop the checkpoints."""
    write_json_atomic(out / LOSS_CURVE, history)
    write_json_atomic(out / MANIFEST, manifest)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
