"""The layout of an activation folder written by several processes (``torchrun``).

Rank ``r`` of ``N`` caches a contiguous run of the one-process run's batches (``shard_bounds``
over the batches, so every rank's batches, and hence their padding, are exactly the ones a
single process forms) into its own folder ``ranks/r0000R/``, which is laid out like a
one-process folder (its own ``manifest.json`` with the resume state, ``shards/``,
``tokens.safetensors``, ``prompts.jsonl``; prompt indices are global). Once every rank is done,
rank 0 writes the folder's ``manifest.json`` over all ranks' shards in prompt order (shard files
``ranks/r0000R/shards/shard_0000S.safetensors``), with ``world_size`` and each rank's slice, and
the merged ``tokens.safetensors`` and ``prompts.jsonl``: readers see one activation folder,
row for row the one a single process writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from interp.artifacts import MANIFEST, atomic_path, read_json, write_json_atomic, write_text_atomic
from interp.cache.store import TOKEN_COLUMNS
from interp.errors import VSFAError
from interp.parallel import shard_bounds

RANKS = "ranks"
"""The subfolder holding one folder per rank."""


def rank_folder(rank: int) -> str:
    """Rank ``rank``'s folder, relative to the activation folder."""
    return f"{RANKS}/r{rank:05d}"


def batch_starts(n_prompts: int, batch_size: int) -> list[int]:
    """The first prompt of every batch of a run over ``n_prompts`` prompts."""
    return list(range(0, n_prompts, batch_size))


def rank_slices(n_prompts: int, batch_size: int, world_size: int) -> list[dict[str, Any]]:
    """Per rank: ``{"rank", "batches": [start, stop), "prompts": [start, stop)}``, contiguous
    runs of whole batches (the one-process run's batches), in rank order."""
    n_batches = len(batch_starts(n_prompts, batch_size))
    slices = []
    for rank in range(world_size):
        first, stop = shard_bounds(n_batches, rank, world_size)
        prompts = [min(first * batch_size, n_prompts), min(stop * batch_size, n_prompts)]
        slices.append({"rank": rank, "batches": [first, stop], "prompts": prompts})
    return slices


def rank_manifest(
    manifest: dict[str, Any], world_size: int, part: dict[str, Any]
) -> dict[str, Any]:
    """The manifest a rank's folder starts from: the run's manifest plus its slice."""
    return {**json.loads(json.dumps(manifest)), "world_size": world_size, **part}


def same_slice(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """``existing`` (a rank folder's manifest) covers the slice ``wanted`` describes."""
    keys = ("world_size", "rank", "batches", "prompts")
    return all(existing.get(key) == wanted.get(key) for key in keys)


def rank_done(out: Path, part: dict[str, Any], world_size: int) -> bool:
    """Rank ``part["rank"]``'s folder holds its finished slice."""
    path = out / rank_folder(part["rank"]) / MANIFEST
    if not path.exists():
        return False
    done = read_json(path)
    return bool(done.get("complete")) and same_slice(done, {**part, "world_size": world_size})


def wait_until(ready: Callable[[], bool], poll_s: float = 0.5) -> None:
    """Return once ``ready()`` holds. The ranks wait for each other through the folder, not a
    collective: a rank done long before the slowest must not hit the group's timeout (10
    minutes on NCCL), and a rank that dies stops the whole launch (torchrun ends the others)."""
    while not ready():
        time.sleep(poll_s)


def merge_ranks(out: Path, manifest: dict[str, Any], slices: list[dict[str, Any]]) -> None:
    """Write ``out``'s ``tokens.safetensors``, ``prompts.jsonl`` and finally its complete
    ``manifest.json`` over the finished rank folders, in rank (= prompt) order."""
    columns: dict[str, list[torch.Tensor]] = {col: [] for col in TOKEN_COLUMNS}
    lines: list[str] = []
    shards: list[dict[str, Any]] = []
    described = []
    for part in slices:
        folder = rank_folder(part["rank"])
        if not rank_done(out, part, len(slices)):
            raise VSFAError(f"{out / folder} is not a finished cache of rank {part['rank']}")
        done = read_json(out / folder / MANIFEST)
        tokens = load_file(str(out / folder / "tokens.safetensors"))
        for col in TOKEN_COLUMNS:
            columns[col].append(tokens[col])
        text = (out / folder / "prompts.jsonl").read_text(encoding="utf-8")
        lines.extend(line for line in text.splitlines() if line.strip())
        shards.extend({**s, "file": f"{folder}/{s['file']}"} for s in done["shards"])
        described.append({**part, "rows": int(done["rows"]), "shards": len(done["shards"])})
    merged = {col: torch.cat(parts) for col, parts in columns.items()}
    with atomic_path(out / "tokens.safetensors") as tmp:
        save_file(merged, str(tmp))
    write_text_atomic(out / "prompts.jsonl", "\n".join(lines) + "\n")
    n_batches = slices[-1]["batches"][1] if slices else 0
    manifest.update(
        shards=shards,
        rows=sum(int(s["rows"]) for s in shards),
        world_size=len(slices),
        ranks=described,
        resume={"batch": n_batches, "skip_rows": 0},
        complete=True,
    )
    write_json_atomic(out / MANIFEST, manifest)
