"""Activation caching: run prompts through a VLM and write residual activations to disk.

Layout of an activation folder (the contract every later stage reads)::

    manifest.json                 model, adapter, hook_names, d_model, dtype, rows, shard_rows,
                                  shards [{file, rows}], positions, complete, config, resume state
    shards/shard_00000.safetensors   one tensor per hook name, ``[rows, d_model]``
    shards/tokens_00000.safetensors  that shard's token columns (kept for resume)
    tokens.safetensors            int64 columns per row: prompt_index, position, token_id, part
    prompts.jsonl                 per prompt: index, id, prompt, image, kind, category, token_ids

``part`` is 0 for image tokens, 1 for text tokens of the prompt and 2 for response tokens.
Every shard holds exactly ``shard_rows`` rows except the last one. Shards are written atomically
(temporary name, then rename) and the manifest records after each shard which batch to resume
from and how many of its rows are already on disk, so a killed run continues where it stopped
and produces the same shards as an uninterrupted one. Memory stays bounded by one shard plus one
batch of activations.
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
from tqdm.auto import tqdm

from interp.artifacts import (
    MANIFEST,
    atomic_path,
    make_manifest,
    manifest_key,
    read_json,
    write_json_atomic,
    write_text_atomic,
)
from interp.errors import VSFAError
from interp.hooks.native import run_with_cache
from interp.hooks.points import hook_point
from interp.models.vlm import VLM

POSITIONS = ("all", "last", "response", "image", "text")
PART_IMAGE, PART_TEXT, PART_RESPONSE = 0, 1, 2
TOKEN_COLUMNS = ("prompt_index", "position", "token_id", "part")
CACHE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ---- prompts ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CachePrompt:
    """One input to cache: a prompt, optional image and optional response (teacher-forced)."""

    id: str
    prompt: str
    image: str | None = None
    response: str | None = None
    kind: str | None = None
    category: str | None = None


def _load_benchmark_items(name: str, path: str | None) -> list[Any]:
    try:
        from interp.data.benchmarks import load_benchmark
    except ModuleNotFoundError:
        # The eval engineer's loader module may not exist yet; the bare registry still works.
        from interp.data.records import get_benchmark_loader

        loader = get_benchmark_loader(name)
        return list(loader(path) if path is not None else loader())
    return load_benchmark(name, path)


def _vqa_prompts(path: Path) -> list[CachePrompt]:
    prompts = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise VSFAError(f"{path}:{line_number} is not valid JSON: {error}") from None
            if "question" not in record:
                raise VSFAError(
                    f"{path}:{line_number} has no 'question' field; expected VQA records "
                    "{id, image, question, answer}"
                )
            image = record.get("image")
            if image and not Path(image).is_absolute() and not Path(image).exists():
                image = str(path.parent / image)  # relative to the jsonl's folder
            prompts.append(
                CachePrompt(
                    id=str(record.get("id", line_number - 1)),
                    prompt=record["question"],
                    image=image or None,
                    response=record.get("answer"),
                    kind="vqa",
                    category=record.get("style"),
                )
            )
    return prompts


def load_prompts(source: str | os.PathLike, *, limit: int | None = None) -> list[CachePrompt]:
    """Prompts from a VQA ``.jsonl``, a text file (one prompt per line) or a benchmark spec.

    A benchmark spec is ``NAME=PATH`` or ``NAME`` (a benchmark that needs no folder).
    """
    source = str(source)
    path = Path(source)
    if path.suffix == ".jsonl" and path.is_file():
        prompts = _vqa_prompts(path)
    elif path.suffix in (".txt", "") and path.is_file():
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        prompts = [CachePrompt(id=str(i), prompt=text) for i, text in enumerate(lines) if text]
    else:
        name, _, bench_path = source.partition("=")
        if not bench_path and (os.sep in source or path.suffix):
            raise VSFAError(
                f"--prompts {source}: no such file; expected a VQA .jsonl, a .txt file with one "
                "prompt per line, or a benchmark spec NAME=PATH"
            )
        items = _load_benchmark_items(name, bench_path or None)
        prompts = [
            CachePrompt(
                id=item.key,
                prompt=item.prompt,
                image=item.image_path,
                kind=item.kind,
                category=item.category,
            )
            for item in items
        ]
    if not prompts:
        raise VSFAError(f"--prompts {source} holds no prompts")
    return prompts[:limit] if limit is not None else prompts


# ---- config ------------------------------------------------------------------------------------
@dataclass
class CacheConfig:
    """What to cache.

    Attributes:
        model: hub id or local folder of the VLM.
        adapter: optional PEFT adapter or training run folder.
        prompts: prompt source (see :func:`load_prompts`).
        hooks: TransformerLens hook names, e.g. ``["blocks.12.hook_resid_post"]``.
        positions: which tokens to keep: ``all``, ``last`` (last prompt token), ``response``,
            ``image`` or ``text`` (text tokens of the prompt).
        out: output folder.
        shard_rows: rows per shard file.
        dtype: storage dtype of the activations (``float32`` or ``bfloat16``).
        batch_size: prompts per forward.
        device: ``cpu``, ``cuda`` or ``auto``.
        model_dtype: dtype the model runs in (``auto``: bf16 on GPU, fp32 on CPU).
        limit: cache only the first N prompts.
        system: optional system prompt.
        quiet: no progress bar.
    """

    model: str
    prompts: str
    hooks: list[str]
    out: str
    adapter: str | None = None
    positions: str = "all"
    shard_rows: int = 16384
    dtype: str = "float32"
    batch_size: int = 8
    device: str = "auto"
    model_dtype: str = "auto"
    limit: int | None = None
    system: str | None = None
    quiet: bool = False

    def validate(self) -> None:
        if self.positions not in POSITIONS:
            raise VSFAError(f"--positions {self.positions!r}: expected one of {POSITIONS}")
        if self.dtype not in CACHE_DTYPES:
            raise VSFAError(f"--dtype {self.dtype!r}: expected one of {tuple(CACHE_DTYPES)}")
        if self.shard_rows < 1 or self.batch_size < 1:
            raise VSFAError("--shard-rows and --batch-size must be at least 1")
        if not self.hooks:
            raise VSFAError("--hooks: give at least one hook name")


# ---- token bookkeeping ---------------------------------------------------------------------------
def _token_parts(
    vlm: VLM, inputs: dict[str, torch.Tensor], batch: Sequence[CachePrompt], system: str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(keep_mask_all, part)`` ``[batch, seq]``: real (non-pad) tokens and their input part."""
    ids = inputs["input_ids"]
    real = inputs.get("attention_mask", torch.ones_like(ids)).bool()
    part = torch.full_like(ids, PART_TEXT)
    image_ids = sorted(vlm.image_token_ids())
    if image_ids:
        part[torch.isin(ids, torch.tensor(image_ids, device=ids.device))] = PART_IMAGE
    tokenizer = vlm.tokenizer
    for row, item in enumerate(batch):
        if item.response is None:
            continue
        # The response is the suffix the chat template adds after the generation prompt. Count
        # it on the unexpanded text (image placeholders expand inside the prompt only).
        has_image = item.image is not None
        prompt_text = vlm.chat_text(item.prompt, image=has_image, system=system)
        full_text = vlm.chat_text(
            item.prompt, image=has_image, system=system, response=item.response
        )
        n_prompt = len(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
        n_full = len(tokenizer(full_text, add_special_tokens=False)["input_ids"])
        positions = real[row].nonzero().flatten()
        n_response = max(n_full - n_prompt, 0)
        if n_response:
            part[row, positions[-n_response:]] = PART_RESPONSE
    part[~real] = -1
    return real, part


def _select(real: torch.Tensor, part: torch.Tensor, positions: str) -> torch.Tensor:
    """Boolean ``[batch, seq]`` mask of the tokens to keep."""
    if positions == "all":
        return real
    if positions == "image":
        return part == PART_IMAGE
    if positions == "text":
        return part == PART_TEXT
    if positions == "response":
        return part == PART_RESPONSE
    # last: the last prompt token (it predicts the first response token)
    prompt_tokens = real & (part != PART_RESPONSE)
    seq = torch.arange(real.shape[1], device=real.device).expand_as(real)
    last = torch.where(prompt_tokens, seq, -1).max(dim=1).values
    mask = torch.zeros_like(real)
    rows = (last >= 0).nonzero().flatten()
    mask[rows, last[rows]] = True
    return mask


# ---- writer ------------------------------------------------------------------------------------
def _shard_name(index: int) -> str:
    return f"shards/shard_{index:05d}.safetensors"


def _tokens_shard_name(index: int) -> str:
    return f"shards/tokens_{index:05d}.safetensors"


class _ShardWriter:
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


# ---- the cache stage ---------------------------------------------------------------------------
def _manifest_for(vlm: VLM, config: CacheConfig, prompts: list[CachePrompt]) -> dict[str, Any]:
    hashed = {k: v for k, v in asdict(config).items() if k not in ("quiet", "out", "device")}
    hashed["prompt_ids"] = [p.id for p in prompts]
    manifest = make_manifest("cache", hashed)
    manifest.update(
        model=vlm.name_or_path,
        adapter=vlm.adapter_path,
        family=vlm.family.name,
        hook_names=list(config.hooks),
        d_model=vlm.d_model,
        dtype=config.dtype,
        positions=config.positions,
        rows=0,
        shard_rows=config.shard_rows,
        shards=[],
        n_prompts=len(prompts),
        resume={"batch": 0, "skip_rows": 0},
        complete=False,
    )
    return manifest


def _existing_state(out: Path, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest to continue from, or None to start fresh; errors on a foreign folder."""
    path = out / MANIFEST
    if not path.exists():
        return None
    existing = read_json(path)
    if existing.get("stage") != "cache":
        raise VSFAError(f"{path} is not an activation-cache manifest; choose another --out")
    if manifest_key(existing) != manifest_key(manifest):
        raise VSFAError(
            f"{out} already holds activations made differently (model {existing.get('model')!r}, "
            f"hooks {existing.get('hook_names')}, positions {existing.get('positions')!r}); "
            "delete it or choose another --out"
        )
    for shard in existing["shards"]:
        if not (out / shard["file"]).exists():
            return None  # a shard vanished: start over rather than guess
    return existing


def cache_activations_for(
    vlm: VLM, prompts: Sequence[CachePrompt] | str, config: CacheConfig
) -> Path:
    """Cache activations of an already loaded VLM (see :class:`CacheConfig`)."""
    from interp.images import open_image

    config.validate()
    for name in config.hooks:
        hook_point(vlm, name)  # raises HookNameError naming the hook and the valid range
    prompt_list = list(
        load_prompts(prompts, limit=config.limit) if isinstance(prompts, str) else prompts
    )[: config.limit]
    out = Path(config.out)
    manifest = _manifest_for(vlm, config, prompt_list)
    existing = _existing_state(out, manifest)
    if existing is not None and existing.get("complete"):
        return out
    if existing is None:
        if (out / "shards").exists():
            shutil.rmtree(out / "shards")
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / MANIFEST, manifest)
    else:
        manifest = existing
    resume_batch = int(manifest["resume"]["batch"])
    skip_rows = int(manifest["resume"]["skip_rows"])

    writer = _ShardWriter(out, manifest, list(config.hooks), CACHE_DTYPES[config.dtype])
    batches = [
        list(range(start, min(start + config.batch_size, len(prompt_list))))
        for start in range(0, len(prompt_list), config.batch_size)
    ]
    token_ids: dict[int, list[int]] = {}
    progress = tqdm(total=len(batches), desc="cache", unit="batch", disable=config.quiet)
    for batch_index, indices in enumerate(batches):
        batch = [prompt_list[i] for i in indices]
        images = [open_image(p.image) if p.image else None for p in batch]
        responses = None
        if any(p.response is not None for p in batch):
            responses = [p.response for p in batch]  # None: prompt only, generation opener
        inputs = vlm.prepare(
            images, [p.prompt for p in batch], system=config.system, responses=responses
        )
        real, part = _token_parts(vlm, inputs, batch, config.system)
        for row, index in enumerate(indices):
            token_ids[index] = inputs["input_ids"][row][real[row]].tolist()
        if batch_index < resume_batch:
            progress.update(1)
            continue  # already on disk; only its token ids were needed for prompts.jsonl
        keep = _select(real, part, config.positions)
        cache = run_with_cache(vlm, inputs, list(config.hooks), stop_early=True)
        first_real = real.int().argmax(dim=1, keepdim=True)  # left padding offset per row
        seq = torch.arange(real.shape[1], device=real.device).expand_as(real)
        prompt_index = torch.tensor(indices, device=real.device)[:, None].expand_as(real)
        cols = {
            "prompt_index": prompt_index[keep],
            "position": (seq - first_real)[keep],
            "token_id": inputs["input_ids"][keep],
            "part": part[keep],
        }
        cols = {k: v.cpu() for k, v in cols.items()}
        acts = {hook: cache[hook][keep].cpu() for hook in config.hooks}
        start = skip_rows if batch_index == resume_batch else 0
        if start:
            cols = {k: v[start:] for k, v in cols.items()}
            acts = {k: v[start:] for k, v in acts.items()}
        writer.add(batch_index, acts, cols, start=start)
        progress.update(1)
    progress.close()
    writer.flush((len(batches), 0))
    _finalize(out, manifest, prompt_list, token_ids)
    return out


def _finalize(
    out: Path,
    manifest: dict[str, Any],
    prompts: list[CachePrompt],
    token_ids: dict[int, list[int]],
) -> None:
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
    for index, prompt in enumerate(prompts):
        record = {"index": index, **asdict(prompt), "token_ids": token_ids.get(index, [])}
        lines.append(json.dumps(record))
    write_text_atomic(out / "prompts.jsonl", "\n".join(lines) + "\n")
    manifest["complete"] = True
    write_json_atomic(out / MANIFEST, manifest)


def cache_activations(config: CacheConfig) -> Path:
    """Load the model named in ``config`` and cache its activations; returns the folder."""
    from interp.models import load_vlm

    config.validate()
    prompts = load_prompts(config.prompts, limit=config.limit)
    vlm = load_vlm(
        config.model, adapter=config.adapter, device=config.device, dtype=config.model_dtype
    )
    return cache_activations_for(vlm, prompts, config)


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

    @property
    def tokens(self) -> dict[str, torch.Tensor]:
        """Columns ``prompt_index``, ``position``, ``token_id``, ``part`` (int64, one per row)."""
        if self._tokens is None:
            file = self.path / "tokens.safetensors"
            if not file.exists():
                raise VSFAError(f"{file} is missing")
            self._tokens = load_file(str(file))
        return self._tokens

    @property
    def prompts(self) -> list[dict[str, Any]]:
        if self._prompts is None:
            file = self.path / "prompts.jsonl"
            if not file.exists():
                raise VSFAError(f"{file} is missing")
            text = file.read_text(encoding="utf-8").splitlines()
            self._prompts = [json.loads(line) for line in text if line.strip()]
        return self._prompts


def __getattr__(name: str) -> Any:
    # ``ActivationStream`` lives in interp.hooks.stream (it imports this module).
    if name == "ActivationStream":
        from interp.hooks.stream import ActivationStream

        return ActivationStream
    raise AttributeError(name)


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
    manifest = make_manifest("cache", config)
    manifest.update(
        model=model,
        adapter=None,
        hook_names=list(tensors),
        d_model=d_model,
        dtype=dtype,
        positions="all",
        rows=0,
        shard_rows=shard_rows,
        shards=[],
        n_prompts=n,
        resume={"batch": 0, "skip_rows": 0},
        complete=False,
    )
    if (out / "shards").exists():
        shutil.rmtree(out / "shards")
    writer = _ShardWriter(out, manifest, list(tensors), CACHE_DTYPES[dtype])
    index = torch.arange(n)
    cols = {
        "prompt_index": index,
        "position": torch.zeros(n, dtype=torch.int64),
        "token_id": torch.full((n,), -1, dtype=torch.int64),
        "part": torch.full((n,), PART_TEXT, dtype=torch.int64),
    }
    writer.add(0, {hook: t.detach().cpu() for hook, t in tensors.items()}, cols)
    writer.flush((1, 0))
    _finalize(out, manifest, [], {})
    return out
