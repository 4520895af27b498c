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
    hashed = {k: v for k, v in asdict(config).items() if k not in ("quiet", "out", "device")}
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


def _existing_state(out: Path, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest to continue from, or None to start fresh; errors on a foreign folder."""
    path = out / MANIFEST
    if not path.exists():
        return None
    existing = read_json(path)
    if existing.get("stage") != "cache":
        raise VSFAError(f"{path} is not an activation-cache manifest; choose another --out")
    if manifest_key(existing) != manifest_key(manifest):
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
            "delete it or choose another --out"
        )
    for shard in existing["shards"]:
        if not (out / shard["file"]).exists():
            return None  # a shard vanished: start over rather than guess
    return existing


# ---- the cache stage ---------------------------------------------------------------------------
def cache_activations_for(
    vlm: VLM, prompts: Sequence[CachePrompt] | str, config: CacheConfig
) -> Path:
    """Cache activations of an already loaded VLM (see :class:`CacheConfig`)."""
    config.validate()
    for name in config.hooks:
        hook_point(vlm, name)  # raises HookNameError naming the hook and the valid range
    prompt_list = list(
        load_prompts(prompts, limit=config.limit) if isinstance(prompts, str) else prompts
    )[: config.limit]
    out = Path(config.out)
    with stage_folder(out, ("shards",)):
        prints = Fingerprints(known_stats(out / MANIFEST))
        manifest = _manifest_for(vlm, config, prompt_list, prints)
        existing = _existing_state(out, manifest)
        if existing is not None and existing.get("complete"):
            return out
        if existing is None:
            if (out / "shards").exists():
                shutil.rmtree(out / "shards")
            for name in ("tokens.safetensors", "prompts.jsonl"):
                (out / name).unlink(missing_ok=True)
            write_json_atomic(out / MANIFEST, manifest)
        else:
            manifest = existing
        _cache(vlm, prompt_list, config, out, manifest)
    return out


def _cache(
    vlm: VLM,
    prompt_list: list[CachePrompt],
    config: CacheConfig,
    out: Path,
    manifest: dict[str, Any],
) -> None:
    """Run the prompts from the manifest's resume point and finish the folder (locked)."""
    from interp.images import open_image

    resume_batch = int(manifest["resume"]["batch"])
    skip_rows = int(manifest["resume"]["skip_rows"])

    writer = ShardWriter(out, manifest, list(config.hooks), CACHE_DTYPES[config.dtype])
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
    finalize(out, manifest, prompt_list, token_ids)


def cache_activations(config: CacheConfig) -> Path:
    """Load the model named in ``config`` and cache its activations; returns the folder."""
    from interp.models import load_vlm

    config.validate()
    prompts = load_prompts(config.prompts, limit=config.limit)
    vlm = load_vlm(
        config.model, adapter=config.adapter, device=config.device, dtype=config.model_dtype
    )
    return cache_activations_for(vlm, prompts, config)
