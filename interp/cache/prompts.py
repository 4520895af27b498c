"""Prompt sets to cache: a VQA ``.jsonl``, a text file (one prompt per line) or a benchmark."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.data.jsonl import parse_json_object
from interp.errors import VSFAError


@dataclass(frozen=True)
class CachePrompt:
    """One input to cache: a prompt, optional image and optional response (teacher-forced)."""

    id: str
    prompt: str
    image: str | None = None
    response: str | None = None
    kind: str | None = None
    category: str | None = None


def _vqa_record(path: Path, number: int, line: str) -> dict[str, Any]:
    record = parse_json_object(line, f"{path} line {number}")
    if "question" not in record:
        raise VSFAError(
            f"{path} line {number}: has no 'question' field; expected VQA records "
            "{id, image, question, answer}"
        )
    return record


def _vqa_prompts(path: Path) -> list[CachePrompt]:
    """VQA records as prompts answered by their ``answer`` (the response that is cached)."""
    with path.open(encoding="utf-8") as handle:  # JSON strings may hold other line breaks
        numbered = [(n, line) for n, line in enumerate(handle, 1) if line.strip()]
    prompts = []
    for number, line in numbered:
        record = _vqa_record(path, number, line)
        image = record.get("image")
        if image and not Path(image).is_absolute() and not Path(image).exists():
            image = str(path.parent / image)  # relative to the jsonl's folder
        prompts.append(
            CachePrompt(
                id=str(record.get("id", number - 1)),
                prompt=record["question"],
                image=image or None,
                response=record.get("answer"),
                kind="vqa",
                category=record.get("style"),
            )
        )
    return prompts


def _benchmark_prompts(name: str, path: str | None) -> list[CachePrompt]:
    from interp.data.benchmarks import load_benchmark

    return [
        CachePrompt(
            id=item.key,
            prompt=item.prompt,
            image=item.image_path,
            kind=item.kind,
            category=item.category,
        )
        for item in load_benchmark(name, path)
    ]


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
        prompts = _benchmark_prompts(name, bench_path or None)
    if not prompts:
        raise VSFAError(f"--prompts {source} holds no prompts")
    return prompts[:limit] if limit is not None else prompts
