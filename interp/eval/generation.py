"""Batched, resumable generation over benchmark items.

Responses go to ``generations.jsonl``, one record per (item, sample), appended one whole batch
at a time (a single write, flushed and fsynced). After a crash or Ctrl-C, the next call reads
the records already there (dropping a torn last line and any record written twice), skips them
and generates only the rest, so no item is lost or generated twice. The batches are cut from the
full list of (item, sample) pairs, never from what is left to do: a sampled batch's seed comes
from its first pair, and a batch that was only partly on disk is generated again whole (keeping
only its missing records), so a resumed run equals an uninterrupted one whatever the kill point.
A sidecar ``generations.meta.json`` holds the fingerprint of the setup (model, adapter, their
content hashes, decoding settings, system text, prompt suffix); resuming with a different
setting is refused in one line naming it, and generations made from inputs whose content has
changed since (a retrained adapter at the same path) are discarded and made again.

An unreadable image becomes a ``skipped`` record with its reason; the run goes on. Reading and
appending the file and its setup check: :mod:`interp.eval.generations_file`; the same batches
shared by the ranks of a ``torchrun`` launch: :mod:`interp.eval.shards`.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from interp.data.records import BenchmarkItem
from interp.errors import VSFAError
from interp.eval.generations_file import append_records, check_setup, read_generations
from interp.locks import folder_lock

HookFactory = Callable[[], AbstractContextManager]
Pair = tuple[BenchmarkItem, int]
"""One (item, sample index) to generate."""


@dataclass
class GenerationConfig:
    """Decoding settings. Greedy by default; sampling draws ``samples_per_item`` samples per item
    with seeds derived from ``seed`` (per batch of the full item list, so reruns and resumed
    runs are reproducible; with sampling the draws also depend on ``batch_size``)."""

    max_new_tokens: int = 64
    """tokens generated per response"""
    batch_size: int = 8
    """items per generation batch (changes speed, not greedy responses; sampled draws are seeded
    per batch)"""
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
        """What decides the responses (for greedy decoding the batch size only changes speed,
        so resuming after an out-of-memory error with a smaller batch is allowed)."""
        data = asdict(self)
        if not self.do_sample:
            data.pop("batch_size")
            for key in ("temperature", "top_p", "seed"):
                data.pop(key)
        return data


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
    config = config or GenerationConfig()
    config.validate()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(out.parent):
        return _generate(
            vlm, items, out, config, system=system, suffix=suffix, hooks=hooks, quiet=quiet,
            overwrite=overwrite, fingerprint_extra=fingerprint_extra,
        )  # fmt: skip


def content_inputs(vlm: Any, prints: Any = None) -> dict[str, str | None]:
    """Content fingerprints of the model and adapter behind ``vlm`` (see
    :mod:`interp.fingerprint`); ``prints`` a :class:`~interp.fingerprint.Fingerprints`."""
    from interp.fingerprint import Fingerprints, model_inputs
    from interp.models.loading import resolve_run_dir

    adapter = None if vlm.adapter_path is None else resolve_run_dir(vlm.adapter_path)[1]
    return model_inputs(prints or Fingerprints(), vlm.name_or_path, adapter)


def grid(pairs: Sequence[Pair], config: Any) -> list[list[Pair]]:
    """The full pair list cut into ``batch_size`` batches (a sampled batch's seed and draws
    depend on all its rows, so these boundaries never move)."""
    size = config.batch_size
    return [list(pairs[i : i + size]) for i in range(0, len(pairs), size)]


def _batches(pairs: list[Pair], done: dict[tuple[str, int], Any], config: Any) -> list[list[Pair]]:
    """The batches still to generate. Greedy: the missing pairs in order, ``batch_size`` at a
    time. Sampled: every batch of the full pair list with a pair missing, whole."""
    if not config.do_sample:
        size = config.batch_size
        pending = [(item, s) for item, s in pairs if (item.key, s) not in done]
        return [pending[i : i + size] for i in range(0, len(pending), size)]
    return [b for b in grid(pairs, config) if any((item.key, s) not in done for item, s in b)]


def setup_fingerprint(
    vlm: Any,
    config: GenerationConfig,
    *,
    system: str | None,
    suffix: str | None,
    hooks: Sequence[HookFactory],
    fingerprint_extra: dict[str, Any] | None,
) -> dict[str, Any]:
    """What decides the responses of a generations file (kept in its ``.meta.json``)."""
    return {
        "model": vlm.name_or_path,
        "adapter": vlm.adapter_path,
        "generation": config.fingerprint(),
        "system": system,
        "suffix": suffix,
        "hooks": len(hooks),
        "inputs": content_inputs(vlm),
        **(fingerprint_extra or {}),
    }


def item_pairs(items: Sequence[BenchmarkItem], config: GenerationConfig) -> list[Pair]:
    """Every (item, sample) to generate, in file order; duplicate item keys are refused."""
    keys = [item.key for item in items]
    if len(set(keys)) != len(keys):
        raise VSFAError("benchmark items have duplicate keys; each benchmark/id must be unique")
    return [(item, s) for item in items for s in range(config.samples_per_item)]


def _generate(
    vlm: Any,
    items: Sequence[BenchmarkItem],
    out: Path,
    config: GenerationConfig,
    *,
    system: str | None,
    suffix: str | None,
    hooks: Sequence[HookFactory],
    quiet: bool,
    overwrite: bool,
    fingerprint_extra: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    fingerprint = setup_fingerprint(
        vlm, config, system=system, suffix=suffix, hooks=hooks, fingerprint_extra=fingerprint_extra
    )
    check_setup(out, fingerprint, overwrite, quiet)
    done = {(r["key"], r["sample"]): r for r in read_generations(out)}
    pairs = item_pairs(items, config)
    batches = _batches(pairs, done, config)
    missing = sum(1 for item, s in pairs if (item.key, s) not in done)
    bar = tqdm(
        total=len(pairs), initial=len(pairs) - missing, desc="generating",
        disable=quiet, unit="item",
    )  # fmt: skip
    run_batches(vlm, batches, out, done, config, system=system, suffix=suffix, hooks=hooks,
                bar=bar)  # fmt: skip
    bar.close()
    return [done[(item.key, s)] for item, s in pairs]


def run_batches(
    vlm: Any,
    batches: Sequence[Sequence[Pair]],
    out: Path,
    done: dict[tuple[str, int], dict[str, Any]],
    config: GenerationConfig,
    *,
    system: str | None,
    suffix: str | None,
    hooks: Sequence[HookFactory],
    bar: Any,
) -> None:
    """Generate ``batches`` and append each batch's records missing from ``done`` to ``out``
    (one durable write per batch), adding them to ``done``."""
    from interp.images import open_image

    for batch in batches:
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
        new = [r for r in records if (r["key"], r["sample"]) not in done]
        if new:
            append_records(out, new)
        for record in new:
            done[(record["key"], record["sample"])] = record
        bar.update(len(new))
