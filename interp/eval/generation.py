"""Batched, resumable generation over benchmark items.

Responses go to ``generations.jsonl``, one record per (item, sample), appended one whole batch
at a time (a single write, flushed and fsynced). After a crash or Ctrl-C, the next call reads
the records already there (dropping a torn last line), skips them and generates only the rest,
so no item is lost or generated twice, and the batches (hence the outputs) are the same as in
an uninterrupted run. A sidecar ``generations.meta.json`` holds the fingerprint of the setup
(model, adapter, decoding settings, system text, prompt suffix); resuming with a different setup
is refused instead of silently mixing responses.

An unreadable image becomes a ``skipped`` record with its reason; the run goes on.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from interp.artifacts import json_sha256, read_json, write_json_atomic, write_text_atomic
from interp.data.records import BenchmarkItem
from interp.errors import VSFAError

HookFactory = Callable[[], AbstractContextManager]


@dataclass
class GenerationConfig:
    """Decoding settings. Greedy by default; sampling draws ``samples_per_item`` samples per item
    with seeds derived from ``seed`` (per batch, so reruns are reproducible)."""

    max_new_tokens: int = 64
    """tokens generated per response"""
    batch_size: int = 8
    """items per generation batch (changes speed, not the responses)"""
    do_sample: bool = False
    """sample instead of greedy decoding"""
    temperature: float = 1.0
    """sampling temperature"""
    top_p: float = 1.0
    """nucleus sampling threshold"""
    seed: int = 0
    """seed of the sampling draws"""
    samples_per_item: int = 1
    """samples per item (with sampling)"""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.max_new_tokens < 1:
            raise VSFAError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise VSFAError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.samples_per_item < 1:
            raise VSFAError(f"--samples-per-item must be >= 1, got {self.samples_per_item}")
        if self.samples_per_item > 1 and not self.do_sample:
            raise VSFAError("--samples-per-item > 1 needs sampling (--sample); greedy repeats")
        if self.do_sample and (self.temperature <= 0 or not 0 < self.top_p <= 1):
            raise VSFAError("sampling needs --temperature > 0 and 0 < --top-p <= 1")

    def fingerprint(self) -> dict[str, Any]:
        """What decides the responses (batch size only changes speed, so resuming after an
        out-of-memory error with a smaller batch is allowed)."""
        data = asdict(self)
        data.pop("batch_size")
        if not self.do_sample:
            for key in ("temperature", "top_p", "seed"):
                data.pop(key)
        return data


def meta_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.stem + ".meta.json")


def read_generations(out_path: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete records of a generations file; a torn last line (crash mid-write) is
    dropped and the file repaired."""
    path = Path(out_path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    records: list[dict[str, Any]] = []
    good = 0
    for line in lines:
        if not line.endswith("\n"):
            break
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if not isinstance(record, dict) or "key" not in record:
            break
        records.append(record)
        good += 1
    if good != len(lines):
        write_text_atomic(path, "".join(lines[:good]))
    return records


def _append(path: Path, records: list[dict[str, Any]]) -> None:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _check_setup(out_path: Path, fingerprint: dict[str, Any], overwrite: bool) -> None:
    meta = meta_path(out_path)
    key = json_sha256(fingerprint)
    if overwrite:
        for path in (out_path, meta):
            if path.exists():
                path.unlink()
    if out_path.exists() and meta.exists():
        existing = read_json(meta)
        if existing.get("key") != key:
            before = existing.get("setup") or {}
            changed = sorted(
                k for k in {*before, *fingerprint} if before.get(k) != fingerprint.get(k)
            )
            raise VSFAError(
                f"{out_path} holds generations from a different setup (changed: "
                f"{', '.join(changed) or 'unknown'}); use another --out folder or --overwrite"
            )
    elif out_path.exists() and out_path.stat().st_size > 0:
        raise VSFAError(
            f"{out_path} exists without {meta.name}; cannot tell how it was made. Use another "
            "--out folder or --overwrite"
        )
    write_json_atomic(meta, {"key": key, "setup": fingerprint})


def build_prompt(item: BenchmarkItem, suffix: str | None) -> str:
    """The user text sent to the model: the item's prompt, then the defense text if any."""
    return item.prompt if not suffix else f"{item.prompt}\n{suffix}"


def _prepare(
    vlm: Any, records: list[dict[str, Any]], runnable: list[tuple[int, Any]], system: str | None
) -> tuple[dict[str, Any], list[tuple[int, Any]]]:
    """Model inputs of the batch. When the processor rejects the batch, each item is tried
    alone, so an image the processor cannot take (though PIL opened it) becomes a skipped
    record instead of ending the run. A text-only item failing alone means the error is not
    about an image: it is raised."""
    errors = (ValueError, RuntimeError, OSError, TypeError, IndexError)

    def prepare(chosen: list[tuple[int, Any]]) -> dict[str, Any]:
        images = [image for _, image in chosen]
        return vlm.prepare(images, [records[i]["prompt"] for i, _ in chosen], system=system)

    try:
        return prepare(runnable), runnable
    except errors as batch_error:
        kept = []
        for index, image in runnable:
            try:
                prepare([(index, image)])
            except errors as error:
                if image is None:
                    raise batch_error from error
                reason = f"the processor rejected {records[index]['image']}: {error}"
                records[index].update(skipped=True, reason=reason)
            else:
                kept.append((index, image))
        return (prepare(kept) if kept else {}), kept


def generate_responses(
    vlm: Any,
    items: Sequence[BenchmarkItem],
    out_path: str | os.PathLike,
    config: GenerationConfig | None = None,
    *,
    system: str | None = None,
    suffix: str | None = None,
    hooks: Sequence[HookFactory] = (),
    quiet: bool = False,
    overwrite: bool = False,
    fingerprint_extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Generate (or resume generating) one response per item and sample into ``out_path``.

    Args:
        vlm: a loaded :class:`interp.models.VLM`.
        items: the benchmark items, in the order they are generated.
        out_path: the ``generations.jsonl`` file (created or resumed).
        config: decoding settings.
        system: system text for the chat template.
        suffix: text appended to every user prompt (a defense prompt such as AdaShield-S).
        hooks: factories of context managers entered around every batch's generation (steering
            plugs in here); describe them in ``fingerprint_extra`` so resuming checks them.
        quiet: no progress bar.
        overwrite: discard existing generations instead of resuming.
        fingerprint_extra: more facts that decide the responses (e.g. a steering setting).

    Returns:
        The records of ``items`` (each ``{key, benchmark, id, category, kind, sample, prompt,
        image, response, skipped, reason, new_tokens}``) in item order.
    """
    from interp.images import open_image

    config = config or GenerationConfig()
    config.validate()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fingerprint = {
        "model": vlm.name_or_path,
        "adapter": vlm.adapter_path,
        "generation": config.fingerprint(),
        "system": system,
        "suffix": suffix,
        "hooks": len(hooks),
        **(fingerprint_extra or {}),
    }
    _check_setup(out, fingerprint, overwrite)
    done = {(r["key"], r["sample"]): r for r in read_generations(out)}
    pairs = [(item, s) for item in items for s in range(config.samples_per_item)]
    keys = [item.key for item in items]
    if len(set(keys)) != len(keys):
        raise VSFAError("benchmark items have duplicate keys; each benchmark/id must be unique")
    pending = [(item, s) for item, s in pairs if (item.key, s) not in done]
    bar = tqdm(
        total=len(pairs), initial=len(pairs) - len(pending), desc="generating",
        disable=quiet, unit="item",
    )  # fmt: skip
    for start in range(0, len(pending), config.batch_size):
        batch = pending[start : start + config.batch_size]
        records: list[dict[str, Any]] = []
        runnable: list[tuple[int, Any]] = []
        for item, sample in batch:
            record = {
                "key": item.key, "benchmark": item.benchmark, "id": item.id,
                "category": item.category, "kind": item.kind, "sample": sample,
                "prompt": build_prompt(item, suffix), "image": item.image_path,
                "response": None, "skipped": False, "reason": None, "new_tokens": 0,
            }  # fmt: skip
            image = None
            if item.image_path is not None:
                try:
                    image = open_image(item.image_path)
                except VSFAError as error:
                    record.update(skipped=True, reason=str(error))
            records.append(record)
            if not record["skipped"]:
                runnable.append((len(records) - 1, image))
        if runnable:
            seed = None
            if config.do_sample:
                first = batch[0]
                seed = zlib.crc32(f"{config.seed}:{first[0].key}:{first[1]}".encode())
            inputs, runnable = _prepare(vlm, records, runnable, system)
        if runnable:
            with ExitStack() as stack:
                for factory in hooks:
                    stack.enter_context(factory())
                new_ids = vlm.generate_ids(
                    inputs,
                    max_new_tokens=config.max_new_tokens,
                    do_sample=config.do_sample,
                    temperature=config.temperature,
                    top_p=config.top_p,
                    seed=seed,
                )
            texts = vlm.decode(new_ids)
            pad = vlm.tokenizer.pad_token_id
            for (index, _), text, ids in zip(runnable, texts, new_ids):
                records[index]["response"] = text
                records[index]["new_tokens"] = (
                    int((ids != pad).sum()) if pad is not None else len(ids)
                )
        _append(out, records)
        for record in records:
            done[(record["key"], record["sample"])] = record
        bar.update(len(batch))
    bar.close()
    return [done[(item.key, s)] for item, s in pairs]
