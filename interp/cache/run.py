"""The caching run: prompts through a VLM, residual activations at the hooks into shards.

Memory stays bounded by one shard plus one batch of activations. A killed run continues from the
state its manifest records and produces the same shards as an uninterrupted one (see
:mod:`interp.cache.store` for the folder's layout). The manifest keys on the content of what was
cached (model and adapter weights, prompt texts, images), so a retrained adapter or an edited
prompt file at the same path is cached again; the folder is locked while it is written.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from interp.artifacts import (
    MANIFEST,
    json_sha256,
    manifest_key,
    read_json,
    stage_folder,
    write_json_atomic,
)
from interp.cache.config import CacheConfig
from interp.cache.prompts import CachePrompt, load_prompts
from interp.cache.ranks import (
    RANKS,
    batch_starts,
    merge_ranks,
    rank_done,
    rank_folder,
    rank_manifest,
    rank_slices,
    same_slice,
    wait_until,
)
from interp.cache.store import (
    CACHE_DTYPES,
    PART_IMAGE,
    PART_IMAGE_MARKER,
    PART_RESPONSE,
    PART_TEXT,
    ShardWriter,
    finalize,
    new_manifest,
)
from interp.errors import VSFAError
from interp.fingerprint import Fingerprints, known_stats, model_inputs
from interp.hooks.native import run_with_cache
from interp.hooks.points import hook_point
from interp.models.vlm import VLM
from interp.parallel import Ranks, broadcast_object, process_group


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
    marker_ids = sorted(vlm.image_marker_ids())
    if marker_ids:
        part[torch.isin(ids, torch.tensor(marker_ids, device=ids.device))] = PART_IMAGE_MARKER
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
    if positions != "decision":
        raise VSFAError(f"unknown positions {positions!r}")
    # decision: the last prompt token (it predicts the first response token)
    prompt_tokens = real & (part != PART_RESPONSE)
    seq = torch.arange(real.shape[1], device=real.device).expand_as(real)
    last = torch.where(prompt_tokens, seq, -1).max(dim=1).values
    mask = torch.zeros_like(real)
    rows = (last >= 0).nonzero().flatten()
    mask[rows, last[rows]] = True
    return mask


# ---- resume state ------------------------------------------------------------------------------
def _inputs(vlm: VLM, prompts: list[CachePrompt], prints: Fingerprints) -> dict[str, Any]:
    """Content hashes of what the activations come from: weights, prompt texts, images."""
    from interp.models.loading import resolve_run_dir

    adapter = None if vlm.adapter_path is None else resolve_run_dir(vlm.adapter_path)[1]
    inputs: dict[str, Any] = model_inputs(prints, vlm.name_or_path, adapter)
    inputs["prompts"] = json_sha256([asdict(p) for p in prompts])
    inputs["images"] = prints.paths(p.image for p in prompts)
    return inputs


def _manifest_for(
    vlm: VLM, config: CacheConfig, prompts: list[CachePrompt], prints: Fingerprints
) -> dict[str, Any]:
    skipped = ("quiet", "out", "device", "device_map", "max_memory", "overwrite")
    hashed = {k: v for k, v in asdict(config).items() if k not in skipped}
    hashed["positions"] = config.position_set  # an alias caches the same rows
    hashed["prompt_ids"] = [p.id for p in prompts]
    manifest = new_manifest(
        hashed, model=vlm.name_or_path, adapter=vlm.adapter_path, family=vlm.family.name,
        hook_names=list(config.hooks), d_model=vlm.d_model, dtype=config.dtype,
        positions=config.position_set, positions_requested=config.positions,
        shard_rows=config.shard_rows, n_prompts=len(prompts),
        inputs=_inputs(vlm, prompts, prints),
    )  # fmt: skip
    manifest["input_files"] = prints.stats
    return manifest


def _existing_state(
    out: Path, manifest: dict[str, Any], world_size: int = 1, overwrite: bool = False
) -> dict[str, Any] | None:
    """The manifest to continue from, or None to start fresh; errors on a foreign folder, on a
    cache made with other options and on an unfinished cache of another number of processes
    (``overwrite`` starts those two again)."""
    path = out / MANIFEST
    if not path.exists():
        return None
    existing = read_json(path)
    if existing.get("stage") != "cache":
        raise VSFAError(f"{path} is not an activation-cache manifest; choose another --out")
    if manifest_key(existing) != manifest_key(manifest):
        if overwrite:
            return None
        if existing.get("config") == manifest["config"]:
            print(
                f"{out}: the model, adapter, prompts or images changed since it was cached; "
                "caching again",
                file=sys.stderr,
            )
            return None
        raise VSFAError(
            f"{out} already holds activations made differently (model {existing.get('model')!r}, "
            f"hooks {existing.get('hook_names')}, positions {existing.get('positions')!r}); "
            "pass --overwrite to replace it, delete it or choose another --out"
        )
    for shard in existing["shards"]:
        if not (out / shard["file"]).exists():
            return None  # a shard vanished: start over rather than guess
    before = int(existing.get("world_size", 1))
    if not existing.get("complete") and before != world_size and not overwrite:
        raise VSFAError(
            f"{out} holds an unfinished cache of {before} process(es), this run has "
            f"{world_size}; finish it with as many (torchrun --nproc_per_node {before}) or pass "
            "--overwrite to start again"
        )
    return existing if existing.get("complete") or before == world_size else None


def _clear(out: Path) -> None:
    """Remove an activation folder's outputs (the manifest is rewritten next)."""
    for name in ("shards", RANKS):
        if (out / name).exists():
            shutil.rmtree(out / name)
    for name in ("tokens.safetensors", "prompts.jsonl"):
        (out / name).unlink(missing_ok=True)


# ---- the cache stage ---------------------------------------------------------------------------
def cache_activations_for(
    vlm: VLM, prompts: Sequence[CachePrompt] | str, config: CacheConfig
) -> Path:
    """Cache activations of an already loaded VLM (see :class:`CacheConfig`). Under
    ``torchrun`` every process caches its share of the batches (:mod:`interp.cache.ranks`)."""
    config.validate()
    for name in config.hooks:
        hook_point(vlm, name)  # raises HookNameError naming the hook and the valid range
    prompt_list = list(
        load_prompts(prompts, limit=config.limit) if isinstance(prompts, str) else prompts
    )[: config.limit]
    out = Path(config.out)
    with process_group(str(vlm.device), command="cache") as ranks:
        if ranks.distributed:
            return _cache_ranks(vlm, prompt_list, config, ranks)
        with stage_folder(out, ("shards",)):
            prints = Fingerprints(known_stats(out / MANIFEST))
            manifest = _manifest_for(vlm, config, prompt_list, prints)
            existing = _existing_state(out, manifest, overwrite=config.overwrite)
            if existing is not None and existing.get("complete"):
                return out
            if existing is None:
                _clear(out)
                write_json_atomic(out / MANIFEST, manifest)
            else:
                manifest = existing
            _cache(vlm, prompt_list, config, out, manifest)
    return out


def _batches(n_prompts: int, batch_size: int) -> list[list[int]]:
    """The prompt indices of each batch (the same batches, hence padding, on every launch)."""
    return [
        list(range(start, min(start + batch_size, n_prompts)))
        for start in batch_starts(n_prompts, batch_size)
    ]


def _cache_ranks(
    vlm: VLM, prompt_list: list[CachePrompt], config: CacheConfig, ranks: Ranks
) -> Path:
    """One process of a multi-process run: rank 0 decides (under the folder's lock, held to
    the end) whether to finish, continue or start the folder; every rank caches its slice into
    its own folder; rank 0 writes the folder's manifest once all are done."""
    out = Path(config.out)
    slices = rank_slices(len(prompt_list), config.batch_size, ranks.world_size)
    with ExitStack() as held:
        plan: dict[str, Any] = {}
        if ranks.is_main:
            try:
                held.enter_context(stage_folder(out, ("shards",)))
                prints = Fingerprints(known_stats(out / MANIFEST))
                manifest = _manifest_for(vlm, config, prompt_list, prints)
                existing = _existing_state(out, manifest, ranks.world_size, config.overwrite)
                if existing is None:
                    _clear(out)
                    write_json_atomic(out / MANIFEST, {**manifest, "world_size": ranks.world_size,
                                                       "ranks": slices})  # fmt: skip
                plan = {"done": bool(existing and existing.get("complete")), "manifest": manifest}
            except VSFAError as error:
                plan = {"error": str(error)}
        plan = broadcast_object(plan, ranks)
        if "error" in plan:
            raise VSFAError(plan["error"])
        if not (out / MANIFEST).exists():
            raise VSFAError(
                f"--out {out}: rank {ranks.rank} does not see the folder rank 0 writes; give a "
                "folder every process sees (a shared filesystem)"
            )
        if plan["done"]:
            return out
        _cache_rank(vlm, prompt_list, config, plan["manifest"], slices[ranks.rank], ranks)
        if ranks.is_main:
            wait_until(lambda: all(rank_done(out, p, ranks.world_size) for p in slices))
            merge_ranks(out, plan["manifest"], slices)
        else:  # no rank returns before the folder is complete
            wait_until(lambda: bool(read_json(out / MANIFEST).get("complete")))
    return out


def _cache_rank(
    vlm: VLM,
    prompt_list: list[CachePrompt],
    config: CacheConfig,
    manifest: dict[str, Any],
    part: dict[str, Any],
    ranks: Ranks,
) -> None:
    """Cache this rank's slice into its folder, continuing what an earlier run left there."""
    folder = Path(config.out) / rank_folder(ranks.rank)
    wanted = rank_manifest(manifest, ranks.world_size, part)
    with stage_folder(folder, ("shards",)):
        existing = None
        if (folder / MANIFEST).exists():
            existing = read_json(folder / MANIFEST)
            shards_there = all((folder / s["file"]).exists() for s in existing.get("shards", []))
            same = manifest_key(existing) == manifest_key(wanted) and same_slice(existing, wanted)
            if not (same and shards_there):
                existing = None
        if existing is not None and existing.get("complete"):
            return
        if existing is None:
            _clear(folder)
            write_json_atomic(folder / MANIFEST, wanted)
        first, stop = part["batches"]
        batches = _batches(len(prompt_list), config.batch_size)[first:stop]
        _cache(vlm, prompt_list, config, folder, existing or wanted, batches, rank=ranks.rank)


def _cache(
    vlm: VLM,
    prompt_list: list[CachePrompt],
    config: CacheConfig,
    out: Path,
    manifest: dict[str, Any],
    batches: list[list[int]] | None = None,
    rank: int | None = None,
) -> None:
    """Run ``batches`` (default: all the prompts') from the manifest's resume point and finish
    the folder (locked); ``rank`` is the process's (only rank 0 shows a progress bar)."""
    from interp.images import open_image

    resume_batch = int(manifest["resume"]["batch"])
    skip_rows = int(manifest["resume"]["skip_rows"])

    writer = ShardWriter(out, manifest, list(config.hooks), CACHE_DTYPES[config.dtype])
    if batches is None:
        batches = _batches(len(prompt_list), config.batch_size)
    token_ids: dict[int, list[int]] = {}
    desc = "cache" if rank is None else f"cache r{rank}"  # one bar: rank 0's, of its share
    hidden = config.quiet or bool(rank)
    progress = tqdm(total=len(batches), desc=desc, unit="batch", disable=hidden)
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
        keep = _select(real, part, config.position_set)
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
    first = batches[0][0] if batches else 0
    last = batches[-1][-1] + 1 if batches else 0
    finalize(out, manifest, prompt_list[first:last], token_ids, first_index=first)


def cache_activations(config: CacheConfig) -> Path:
    """Load the model named in ``config`` and cache its activations; returns the folder. Under
    ``torchrun`` the process joins its group first (on GPUs: its own device, then the model)."""
    from interp.models.loading import resolve_device

    with process_group(str(resolve_device(config.device)), command="cache"):
        return _load_and_cache(config)


def _load_and_cache(config: CacheConfig) -> Path:
    from interp.models import load_vlm

    config.validate()
    prompts = load_prompts(config.prompts, limit=config.limit)
    vlm = load_vlm(
        config.model, adapter=config.adapter, device=config.device, dtype=config.model_dtype,
        device_map=config.device_map, max_memory=config.max_memory,
    )  # fmt: skip
    return cache_activations_for(vlm, prompts, config)
