"""Generation under ``torchrun``: every rank generates its share of the batches into a file of
its own, rank 0 merges them into ``generations.jsonl``.

The batches are those of a one-process run (:func:`interp.eval.generation.grid`: the full list
of (item, sample) pairs cut every ``batch_size``) and rank ``r`` of ``N`` takes the contiguous
run of them that :func:`interp.parallel.shard_bounds` gives it. Every batch is the one a single
process generates, with the same rows, padding and (sampled) seed, so the merged file is the
one-process file, record for record and in the same order.

Rank ``r`` appends to ``generations.rank{r}.jsonl`` (one durable write per batch) beside a
``.meta.json`` of the setup. When every rank is done, rank 0 writes ``generations.jsonl`` in
item order from those files and removes them. Resume: rank 0 first folds what an earlier run
left (the merged file, and rank files of any process count made from the same setup) into
``generations.jsonl``; each rank then generates only its batches that miss a record (whole,
keeping only the missing records), so a run killed at any point and run again ends with the
file an uninterrupted run writes. Rank 0 holds the folder's writer lock throughout.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

from interp.artifacts import json_sha256, read_json, write_json_atomic, write_text_atomic
from interp.data.records import BenchmarkItem
from interp.errors import VSFAError, one_line
from interp.eval.generation import (
    GenerationConfig,
    HookFactory,
    grid,
    item_pairs,
    run_batches,
    setup_fingerprint,
)
from interp.eval.generations_file import check_setup, meta_path, read_generations
from interp.locks import folder_lock
from interp.parallel import Ranks, barrier, broadcast_object, shard_bounds

T = TypeVar("T")


def on_main(ranks: Ranks, work: Callable[[], T], share: bool = True) -> T | None:
    """``work()`` run on rank 0 alone; its value on every rank (``None`` on the others when not
    ``share``). An error there is raised on every rank (elsewhere as a one-line
    :class:`VSFAError` with its message), so no rank waits for a value that never comes."""
    if not ranks.distributed:
        return work()
    if not ranks.is_main:
        status, value = broadcast_object(None, ranks)
        if status == "error":
            raise VSFAError(value)
        return value
    try:
        value = work()
    except Exception as error:
        message = str(error) if isinstance(error, VSFAError) else repr(error)
        broadcast_object(("error", f"rank 0: {one_line(message)}"), ranks)
        raise
    broadcast_object(("ok", value if share else None), ranks)
    return value


def part_path(out: Path, rank: int) -> Path:
    """Rank ``rank``'s generations file beside ``out``."""
    return out.with_name(f"{out.stem}.rank{rank}{out.suffix}")


def part_files(out: Path) -> list[Path]:
    """The rank files beside ``out`` (of any process count; those with only a ``.meta.json``
    too), in rank order."""
    stem, suffix = re.escape(out.stem), re.escape(out.suffix)
    pattern = re.compile(rf"{stem}\.rank(\d+)(?:{suffix}|\.meta\.json)")
    found = (pattern.fullmatch(path.name) for path in out.parent.glob(f"{out.stem}.rank*"))
    ranks = {int(match.group(1)) for match in found if match}
    return [part_path(out, rank) for rank in sorted(ranks)]


def _lines(records: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _identity(record: dict[str, Any]) -> tuple[Any, Any]:
    return record["key"], record.get("sample", 0)


def _collect(out: Path, key: str | None) -> tuple[list[dict[str, Any]], list[Path]]:
    """The records of ``out`` then of the rank files made from the setup ``key`` (none when
    ``key`` is None), each (key, sample) once; and every rank file there."""
    records = read_generations(out)
    seen = {_identity(r) for r in records}
    parts = part_files(out)
    for part in parts:
        meta = meta_path(part)
        if key is None or not meta.exists() or read_json(meta).get("key") != key:
            continue
        for record in read_generations(part):
            if _identity(record) not in seen:
                seen.add(_identity(record))
                records.append(record)
    return records, parts


def _fold(out: Path, records: Sequence[dict[str, Any]], parts: Sequence[Path]) -> None:
    """Write ``records`` to ``out``, then remove the rank files ``parts`` (a kill in between
    leaves records twice, which reading keeps once)."""
    write_text_atomic(out, _lines(records))
    for part in parts:
        part.unlink(missing_ok=True)
        meta_path(part).unlink(missing_ok=True)


def fold_earlier_ranks(out: Path) -> bool:
    """Fold the rank files an earlier run left beside ``out`` (those made from the setup its
    ``.meta.json`` records) into ``out`` and remove them all, so that a run with any process
    count resumes from them (call it holding the folder's lock); whether there were any."""
    if not part_files(out):
        return False
    meta = meta_path(out)
    earlier = read_json(meta).get("key") if meta.exists() else None
    _fold(out, *_collect(out, earlier))
    return True


def put_in_order(out: Path, records: Sequence[dict[str, Any]]) -> None:
    """Rewrite ``out`` with ``records`` in their order (records of other items, left by an
    earlier run, first): after a one-process rerun over folded rank files, whose missing
    batches were appended at the end."""
    chosen = {_identity(r) for r in records}
    extras = [r for r in read_generations(out) if _identity(r) not in chosen]
    write_text_atomic(out, _lines(extras + list(records)))


def _merge(out: Path, pairs: Sequence[tuple[BenchmarkItem, int]], key: str) -> list[dict]:
    """Write ``out`` from itself and every rank's file, records of ``pairs`` in pair order
    (records of other items, left by an earlier run, first); return the records of ``pairs``."""
    records, parts = _collect(out, key)
    by_identity = {_identity(r): r for r in records}
    wanted = [(item.key, s) for item, s in pairs]
    missing = [name for name in wanted if name not in by_identity]
    if missing:
        raise RuntimeError(f"{len(missing)} generation(s) missing after every rank finished")
    chosen = set(wanted)
    extras = [r for name, r in by_identity.items() if name not in chosen]
    ordered = [by_identity[name] for name in wanted]
    _fold(out, extras + ordered, parts)
    return ordered


def generate_sharded(
    vlm: Any,
    items: Sequence[BenchmarkItem],
    out_path: str | os.PathLike,
    config: GenerationConfig,
    ranks: Ranks,
    *,
    system: str | None = None,
    suffix: str | None = None,
    hooks: Sequence[HookFactory] = (),
    quiet: bool = False,
    overwrite: bool = False,
    fingerprint_extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """:func:`interp.eval.generation.generate_responses` over the ranks of a launch (call it on
    every rank, inside :func:`interp.parallel.process_group`). Rank 0 returns the records of
    ``items`` in item order; every other rank the records of its own share."""
    config.validate()
    out = Path(out_path)
    pairs = item_pairs(items, config)
    with ExitStack() as stack:

        def prepare() -> tuple[str, dict[str, Any]]:
            out.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(folder_lock(out.parent))  # re-entrant: evaluate may hold it
            fingerprint = setup_fingerprint(
                vlm, config, system=system, suffix=suffix, hooks=hooks,
                fingerprint_extra=fingerprint_extra,
            )  # fmt: skip
            fold_earlier_ranks(out)
            check_setup(out, fingerprint, overwrite, quiet)  # then resume as one process does
            read_generations(out)  # repairs a torn last line before the other ranks read it
            return json_sha256(fingerprint), fingerprint

        key, fingerprint = on_main(ranks, prepare)
        done = {_identity(r): r for r in read_generations(out)}
        batches = grid(pairs, config)
        start, stop = shard_bounds(len(batches), ranks.rank, ranks.world_size)
        share = [pair for batch in batches[start:stop] for pair in batch]
        todo = [b for b in batches[start:stop] if any((i.key, s) not in done for i, s in b)]
        part = part_path(out, ranks.rank)
        write_json_atomic(meta_path(part), {"key": key, "setup": fingerprint})
        missing = sum(1 for item, s in share if (item.key, s) not in done)
        bar = tqdm(
            total=len(share), initial=len(share) - missing, unit="item",
            desc=f"generating (rank 0 of {ranks.world_size})", disable=quiet or not ranks.is_main,
        )  # fmt: skip
        run_batches(vlm, todo, part, done, config, system=system, suffix=suffix, hooks=hooks,
                    bar=bar)  # fmt: skip
        bar.close()
        barrier(ranks)  # every rank's share is on disk
        merged = on_main(ranks, lambda: _merge(out, pairs, key), share=False)
        return merged if ranks.is_main else [done[(i.key, s)] for i, s in share]
