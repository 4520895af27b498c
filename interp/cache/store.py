"""The activation folder: its layout, the shard writer and :class:`ActivationStore`, its reader.

Layout of an activation folder (the contract every later stage reads)::

    manifest.json                 model, adapter, hook_names, d_model, dtype, rows, shard_rows,
                                  shards [{file, rows}], positions, complete, config, resume state
    shards/shard_00000.safetensors   one tensor per hook name, ``[rows, d_model]``
    shards/tokens_00000.safetensors  that shard's token columns (kept for resume)
    tokens.safetensors            int64 columns per row: prompt_index, position, token_id, part
    prompts.jsonl                 per prompt: index, id, prompt, image, kind, category, token_ids

``part`` is 0 for image positions (the placeholder tokens vision features are written into), 1
for text tokens of the prompt, 2 for response tokens and 3 for image marker tokens
(``<start_of_image>``, ``<|vision_start|>``, ``<row_1_col_1>`` ...).
Every shard holds exactly ``shard_rows`` rows except the last one. Shards are written atomically
(temporary name, then rename) and the manifest records after each shard which batch to resume
from and how many of its rows are already on disk, so a killed run continues where it stopped.
A folder written by several processes keeps each rank's shards in ``ranks/r0000R/`` and lists
them all, in prompt order, in its manifest (:mod:`interp.cache.ranks`); readers see no difference.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from interp.artifacts import (
    MANIFEST,
    atomic_path,
    make_manifest,
    read_json,
    write_json_atomic,
    write_text_atomic,
)
from interp.cache.prompts import CachePrompt
from interp.errors import VSFAError

PART_IMAGE, PART_TEXT, PART_RESPONSE, PART_IMAGE_MARKER = 0, 1, 2, 3
TOKEN_COLUMNS = ("prompt_index", "position", "token_id", "part")
CACHE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ---- writing -----------------------------------------------------------------------------------
def _shard_name(index: int) -> str:
    return f"shards/shard_{index:05d}.safetensors"


def _tokens_shard_name(index: int) -> str:
    return f"shards/tokens_{index:05d}.safetensors"


def new_manifest(
    config: dict[str, Any],
    *,
    model: str,
    adapter: str | None,
    hook_names: list[str],
    d_model: int,
    dtype: str,
    positions: str,
    shard_rows: int,
    n_prompts: int,
    inputs: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The manifest of an empty activation folder (``extra`` follows ``adapter``; ``inputs``
    the content hashes of the model, adapter, prompts and images)."""
    manifest = make_manifest("cache", config, inputs=inputs)
    manifest.update(
        model=model,
        adapter=adapter,
        **extra,
        hook_names=hook_names,
        d_model=d_model,
        dtype=dtype,
        positions=positions,
        rows=0,
        shard_rows=shard_rows,
        shards=[],
        n_prompts=n_prompts,
        resume={"batch": 0, "skip_rows": 0},
        complete=False,
    )
    return manifest


class ShardWriter:
    """Accumulates rows and writes fixed-size shards atomically, recording resume state."""

    def __init__(self, out: Path, manifest: dict[str, Any], hooks: list[str], dtype: torch.dtype):
        self.out, self.manifest, self.hooks, self.dtype = out, manifest, hooks, dtype
        self.shard_rows = int(manifest["shard_rows"])
        self.acts: dict[str, list[torch.Tensor]] = {hook: [] for hook in hooks}
        self.cols: dict[str, list[torch.Tensor]] = {col: [] for col in TOKEN_COLUMNS}
        self.buffered = 0

    def add(
        self,
        batch_index: int,
        acts: dict[str, torch.Tensor],
        cols: dict[str, torch.Tensor],
        start: int = 0,
    ) -> None:
        """Add one batch's rows; ``start`` is how many of the batch's rows are already on disk."""
        n = start + next(iter(cols.values())).shape[0]
        offset = start
        while offset < n:
            take = min(n - offset, self.shard_rows - self.buffered)
            lo, hi = offset - start, offset - start + take
            for hook in self.hooks:
                self.acts[hook].append(acts[hook][lo:hi])
            for col in TOKEN_COLUMNS:
                self.cols[col].append(cols[col][lo:hi])
            self.buffered += take
            offset += take
            if self.buffered == self.shard_rows:
                next_resume = (batch_index, offset) if offset < n else (batch_index + 1, 0)
                self.flush(next_resume)

    def flush(self, resume: tuple[int, int]) -> None:
        """Write the buffered rows as the next shard; ``resume`` is (batch, rows of it on disk)."""
        if self.buffered == 0:
            return
        index = len(self.manifest["shards"])
        tensors = {
            hook: torch.cat(parts).to(self.dtype).contiguous() for hook, parts in self.acts.items()
        }
        columns = {col: torch.cat(parts).to(torch.int64) for col, parts in self.cols.items()}
        for name, data in ((_shard_name(index), tensors), (_tokens_shard_name(index), columns)):
            with atomic_path(self.out / name) as tmp:
                save_file(data, str(tmp))
        self.manifest["shards"].append({"file": _shard_name(index), "rows": self.buffered})
        self.manifest["rows"] += self.buffered
        self.manifest["resume"] = {"batch": resume[0], "skip_rows": resume[1]}
        write_json_atomic(self.out / MANIFEST, self.manifest)
        self.acts = {hook: [] for hook in self.hooks}
        self.cols = {col: [] for col in TOKEN_COLUMNS}
        self.buffered = 0


def finalize(
    out: Path,
    manifest: dict[str, Any],
    prompts: Sequence[CachePrompt],
    token_ids: dict[int, list[int]],
    first_index: int = 0,
) -> None:
    """Merge the shards' token columns, write ``prompts.jsonl`` and mark the folder complete
    (``prompts`` are those from index ``first_index`` on; ``token_ids`` is keyed by index)."""
    columns: dict[str, list[torch.Tensor]] = {col: [] for col in TOKEN_COLUMNS}
    for index in range(len(manifest["shards"])):
        shard_cols = load_file(str(out / _tokens_shard_name(index)))
        for col in TOKEN_COLUMNS:
            columns[col].append(shard_cols[col])
    merged = {
        col: torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)
        for col, parts in columns.items()
    }
    with atomic_path(out / "tokens.safetensors") as tmp:
        save_file(merged, str(tmp))
    lines = []
    for index, prompt in enumerate(prompts, start=first_index):
        record = {"index": index, **asdict(prompt), "token_ids": token_ids.get(index, [])}
        lines.append(json.dumps(record))
    write_text_atomic(out / "prompts.jsonl", "\n".join(lines) + "\n")
    manifest["complete"] = True
    write_json_atomic(out / MANIFEST, manifest)


def write_activations(
    out: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    *,
    model: str = "synthetic",
    shard_rows: int = 16384,
    dtype: str = "float32",
) -> Path:
    """Write in-memory activations ``{hook_name: [rows, d]}`` as an activation folder.

    For activations that do not come from a forward (synthetic data, other tools' caches); each
    row is its own prompt (``prompt_index`` = row, ``position`` 0, ``part`` text).
    """
    out = Path(out)
    rows = {tensor.shape[0] for tensor in tensors.values()}
    widths = {tensor.shape[1] for tensor in tensors.values()}
    if len(rows) != 1 or len(widths) != 1:
        raise VSFAError("write_activations: every hook needs the same [rows, d_model] shape")
    n, d_model = rows.pop(), widths.pop()
    config = {"model": model, "hooks": sorted(tensors), "rows": n, "shard_rows": shard_rows}
    manifest = new_manifest(
        config, model=model, adapter=None, hook_names=list(tensors), d_model=d_model,
        dtype=dtype, positions="all", shard_rows=shard_rows, n_prompts=n,
    )  # fmt: skip
    if (out / "shards").exists():
        shutil.rmtree(out / "shards")
    writer = ShardWriter(out, manifest, list(tensors), CACHE_DTYPES[dtype])
    cols = {
        "prompt_index": torch.arange(n),
        "position": torch.zeros(n, dtype=torch.int64),
        "token_id": torch.full((n,), -1, dtype=torch.int64),
        "part": torch.full((n,), PART_TEXT, dtype=torch.int64),
    }
    writer.add(0, {hook: t.detach().cpu() for hook, t in tensors.items()}, cols)
    writer.flush((1, 0))
    finalize(out, manifest, [], {})
    return out


# ---- reading -----------------------------------------------------------------------------------
@dataclass
class ActivationStore:
    """A finished activation folder: manifest, activations per hook, token columns, prompts."""

    path: Path
    manifest: dict[str, Any] = field(init=False)

    def __init__(self, path: str | os.PathLike, *, check_shards: bool = True):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.exists():
            raise VSFAError(f"{self.path} is not an activation folder (no {MANIFEST})")
        self.manifest = read_json(manifest_path)
        for key in ("hook_names", "d_model", "shards", "rows"):
            if key not in self.manifest:
                raise VSFAError(f"{manifest_path} lacks the field {key!r}; not an activation cache")
        if not self.manifest.get("complete"):
            raise VSFAError(
                f"{self.path} is an unfinished activation cache; rerun `vsfa cache` with the same "
                "options to finish it"
            )
        self._tokens: dict[str, torch.Tensor] | None = None
        self._prompts: list[dict[str, Any]] | None = None
        if check_shards:
            self.check_shards()

    # -- integrity
    def check_shards(self) -> None:
        """Every shard exists, is readable and has the rows and width the manifest says."""
        d_model = int(self.manifest["d_model"])
        for shard in self.manifest["shards"]:
            file = self.path / shard["file"]
            if not file.exists():
                raise VSFAError(f"activation shard {file} is missing (listed in the manifest)")
            try:
                with safe_open(str(file), framework="pt") as handle:
                    for hook in self.hook_names:
                        shape = handle.get_slice(hook).get_shape()
                        if list(shape) != [shard["rows"], d_model]:
                            raise VSFAError(
                                f"activation shard {file}: {hook} has shape {shape}, the manifest "
                                f"says [{shard['rows']}, {d_model}]"
                            )
            except VSFAError:
                raise
            except Exception as error:  # safetensors raises its own error types on corruption
                raise VSFAError(
                    f"activation shard {file} is truncated or corrupt: {error}"
                ) from None

    def check_hook(self, hook_name: str) -> None:
        if hook_name not in self.hook_names:
            raise VSFAError(
                f"{self.path / MANIFEST} has no activations for {hook_name!r}; it holds "
                f"{self.hook_names}"
            )

    def check_model(self, model: str | None = None, d_model: int | None = None) -> None:
        """Raise when the folder was cached from another model (by name or width)."""
        if d_model is not None and int(self.manifest["d_model"]) != d_model:
            raise VSFAError(
                f"{self.path / MANIFEST}: activations have d_model {self.manifest['d_model']}, "
                f"expected {d_model}"
            )
        if model is not None and Path(str(self.manifest["model"])).name != Path(model).name:
            raise VSFAError(
                f"{self.path / MANIFEST} was cached from model {self.manifest['model']!r}, "
                f"not {model!r}"
            )

    # -- data
    @property
    def hook_names(self) -> list[str]:
        return list(self.manifest["hook_names"])

    @property
    def d_model(self) -> int:
        return int(self.manifest["d_model"])

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    def shard_files(self) -> list[Path]:
        return [self.path / shard["file"] for shard in self.manifest["shards"]]

    def iter_shards(self, hook_name: str) -> Iterator[torch.Tensor]:
        """The activations of one hook, one shard at a time (bounded memory)."""
        self.check_hook(hook_name)
        for file in self.shard_files():
            with safe_open(str(file), framework="pt") as handle:
                yield handle.get_tensor(hook_name)

    def load(self, hook_name: str) -> torch.Tensor:
        """All activations of one hook, ``[rows, d_model]`` (in memory)."""
        parts = list(self.iter_shards(hook_name))
        if not parts:
            return torch.zeros(0, self.d_model)
        return torch.cat(parts)

    def _file(self, name: str) -> Path:
        file = self.path / name
        if not file.exists():
            raise VSFAError(f"{file} is missing")
        return file

    @property
    def tokens(self) -> dict[str, torch.Tensor]:
        """Columns ``prompt_index``, ``position``, ``token_id``, ``part`` (int64, one per row)."""
        if self._tokens is None:
            self._tokens = load_file(str(self._file("tokens.safetensors")))
        return self._tokens

    @property
    def prompts(self) -> list[dict[str, Any]]:
        """``prompts.jsonl``: one record per cached prompt (with its ``token_ids``)."""
        if self._prompts is None:
            text = self._file("prompts.jsonl").read_text(encoding="utf-8").splitlines()
            self._prompts = [json.loads(line) for line in text if line.strip()]
        return self._prompts
