"""Build the neutral VQA set that VSFA fine-tunes on.

For every image of a folder, a few neutral questions are drawn from
:mod:`interp.data.vqa_templates` and answered by one **answer source**:

* ``metadata``: the image's sidecar ``<stem>.json`` (``answers[<template id>]``, ``description``);
* ``model:PATH``: a local VLM answers (the model to be tuned answering its own neutral questions is
  self-distillation; a stronger model gives distillation);
* ``jsonl:PATH``: records the user already has (``image``, ``question``, ``answer``).

Records are ``{id, image, question, answer, source, style?, tags?}``; ``image`` is stored
relative to the JSONL's folder so a dataset folder can be moved. The label-free audit runs on the
result before it is written.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from interp.artifacts import file_sha256, json_sha256, make_manifest, write_json_atomic
from interp.data.audit import Lexicon, audit_records, audit_report_path, load_lexicon
from interp.data.jsonl import read_vqa_jsonl, resolve_image, write_jsonl
from interp.data.vqa_templates import QUESTION_TEMPLATES, TEMPLATE_IDS
from interp.errors import VSFAError
from interp.images import IMAGE_SUFFIXES, list_images, open_image


@dataclass
class BuildConfig:
    """Options of ``vsfa data build``; the audit report and manifest are written beside ``out``."""

    images: str
    """image folder (searched recursively), with optional <stem>.json sidecars"""
    out: str
    """the VQA JSONL to write"""
    source: str = "metadata"
    """answer source: metadata (the sidecars), model:PATH (a local VLM answers) or jsonl:PATH
    (records you already have)"""
    questions_per_image: int = 4
    """neutral questions per image (templates drawn without replacement)"""
    seed: int = 0
    """seed of the template and phrasing draws and of the --limit subset"""
    limit: int | None = None
    """keep a seeded random subset of this many images (the data-size ablation)"""
    strict: bool = False
    """fail on corrupt images, images without answers and audit flags instead of skipping or
    dropping them with a count"""
    lexicon: str | Lexicon | None = None
    """audit lexicon file: .json (category -> phrases) or .txt (one phrase per line); default: the
    built-in refusal and safety lexicon (in Python, a category -> phrases mapping also works)"""
    max_new_tokens: int = 48
    """answer length for a model: source"""
    batch_size: int = 8
    """generation batch for a model: source"""
    device: str = "auto"
    """cpu, cuda or auto (model: source)"""
    dtype: str = "auto"
    """float32, bfloat16 or auto (model: source)"""
    quiet: bool = False
    """no progress bars"""

    def __post_init__(self) -> None:
        if self.questions_per_image < 1:
            raise VSFAError("--questions-per-image must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise VSFAError("--limit must be at least 1")
        if self.max_new_tokens < 1:
            raise VSFAError("--max-new-tokens must be at least 1")
        if self.batch_size < 1:
            raise VSFAError("--batch-size must be at least 1")
        if self.lexicon is None or isinstance(self.lexicon, (str, os.PathLike)):
            self.lexicon = load_lexicon(self.lexicon)
        kind, _, arg = self.source.partition(":")
        if kind not in ("metadata", "model", "jsonl") or (kind != "metadata" and not arg):
            raise VSFAError(
                f"--source {self.source!r}: expected metadata, model:PATH or jsonl:PATH"
            )


def _portable(image: Path, out_dir: Path) -> str:
    try:
        return os.path.relpath(image.resolve(), out_dir.resolve())
    except ValueError:  # another drive on Windows
        return str(image.resolve())


# ---- sidecars ------------------------------------------------------------------------------
def read_sidecar(image: Path) -> dict[str, Any] | None:
    """The ``<stem>.json`` beside an image, validated, or None when there is none."""
    path = image.with_suffix(".json")
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise VSFAError(f"sidecar {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise VSFAError(f"sidecar {path}: expected a JSON object")
    answers = data.get("answers", {})
    if not isinstance(answers, dict) or not all(isinstance(v, str) for v in answers.values()):
        raise VSFAError(f"sidecar {path}: field 'answers' must map template ids to strings")
    unknown = sorted(set(answers) - set(TEMPLATE_IDS))
    if unknown:
        raise VSFAError(
            f"sidecar {path}: unknown template ids {unknown} in 'answers'; "
            f"known: {', '.join(TEMPLATE_IDS)}"
        )
    for name in ("description", "style"):
        if name in data and not isinstance(data[name], str):
            raise VSFAError(f"sidecar {path}: field {name!r} must be a string")
    return data


def _metadata_answers(sidecar: dict[str, Any]) -> dict[str, str]:
    answers = {k: v for k, v in sidecar.get("answers", {}).items() if v.strip()}
    if "describe" not in answers and sidecar.get("description"):
        answers["describe"] = sidecar["description"]
    return answers


# ---- building ------------------------------------------------------------------------------
@dataclass
class _Slot:
    """One (image, question) to answer."""

    image: Path
    template: str
    question: str
    sidecar: dict[str, Any] | None
    answer: str | None = None


def _readable(image: Path, strict: bool, skipped: Counter[str], where: str | None = None) -> bool:
    """Whether ``image`` opens; a corrupt one is counted, or with ``strict`` an error (naming
    ``where`` it was referenced, if given)."""
    try:
        open_image(image)
    except VSFAError as error:
        if strict:
            message = (
                f"{where}: {error}" if where else f"{error} (--strict; drop --strict to skip it)"
            )
            raise VSFAError(message) from None
        skipped["corrupt_image"] += 1
        return False
    return True


def _usable_images(
    config: BuildConfig, skipped: Counter[str], rng: random.Random
) -> list[tuple[Path, dict[str, Any] | None]]:
    files = list_images(config.images)
    if config.limit is not None and config.limit < len(files):
        files = sorted(rng.sample(files, config.limit))
    usable = []
    progress = tqdm(files, desc="checking images", disable=config.quiet, unit="img")
    for image in progress:
        if _readable(image, config.strict, skipped):
            usable.append((image, read_sidecar(image)))
    if not usable:
        raise VSFAError(f"image folder {config.images} has no readable images")
    return usable


def _draw(rng: random.Random, templates: Sequence[str], n: int) -> list[tuple[str, str]]:
    chosen = rng.sample(list(templates), min(n, len(templates)))
    return [(t, rng.choice(QUESTION_TEMPLATES[t])) for t in chosen]


def _slots_from_metadata(
    images: list[tuple[Path, dict[str, Any] | None]],
    config: BuildConfig,
    rng: random.Random,
    skipped: Counter[str],
) -> list[_Slot]:
    slots = []
    for image, sidecar in images:
        answers = _metadata_answers(sidecar) if sidecar else {}
        if not answers:
            if config.strict:
                raise VSFAError(
                    f"{image}: no sidecar answers ({image.with_suffix('.json').name} with "
                    "'answers' or 'description') for --source metadata (--strict)"
                )
            skipped["no_metadata"] += 1
            continue
        for template, question in _draw(rng, sorted(answers), config.questions_per_image):
            slots.append(_Slot(image, template, question, sidecar, answers[template]))
    return slots


def _slots_for_model(
    images: list[tuple[Path, dict[str, Any] | None]], config: BuildConfig, rng: random.Random
) -> list[_Slot]:
    return [
        _Slot(image, template, question, sidecar)
        for image, sidecar in images
        for template, question in _draw(rng, TEMPLATE_IDS, config.questions_per_image)
    ]


def _answer_with_model(slots: list[_Slot], model_path: str, config: BuildConfig) -> None:
    from interp.models import load_vlm

    vlm = load_vlm(model_path, device=config.device, dtype=config.dtype)
    batches = range(0, len(slots), config.batch_size)
    for start in tqdm(batches, desc="answering", disable=config.quiet, unit="batch"):
        batch = slots[start : start + config.batch_size]
        answers = vlm.generate(
            [open_image(s.image) for s in batch],
            [s.question for s in batch],
            max_new_tokens=config.max_new_tokens,
        )
        for slot, answer in zip(batch, answers):
            slot.answer = answer


def _records_from_jsonl(path: str, config: BuildConfig, skipped: Counter[str]) -> list[dict]:
    records = read_vqa_jsonl(path)
    out = []
    for record in records:
        image = resolve_image(record["image"], config.images)
        if not image.exists():
            image = resolve_image(record["image"], Path(path).parent)
        if _readable(image, config.strict, skipped, f"{path} record {record['id']}"):
            source = record.get("source", f"jsonl:{path}")
            out.append({**record, "image": image, "source": source})
    if config.limit is not None:
        images = sorted({str(r["image"]) for r in out})
        if config.limit < len(images):
            keep = set(random.Random(config.seed).sample(images, config.limit))
            out = [r for r in out if str(r["image"]) in keep]
    return out


def _record(slot: _Slot, index: int, source: str, out_dir: Path) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": f"{slot.image.stem}-{index}",
        "image": _portable(slot.image, out_dir),
        "question": slot.question,
        "answer": (slot.answer or "").strip(),
        "source": source,
        "template": slot.template,
    }
    sidecar = slot.sidecar or {}
    if sidecar.get("style"):
        record["style"] = sidecar["style"]
    if sidecar.get("tags"):
        record["tags"] = list(sidecar["tags"])
    return record


def build_manifest(config: BuildConfig) -> dict[str, Any]:
    """What decides the built set: config and the content of the image folder."""
    config_dict = {k: v for k, v in asdict(config).items() if k not in ("out", "quiet")}
    config_dict["lexicon"] = {k: list(v) for k, v in config.lexicon.items()}
    folder = Path(config.images)
    files = (
        sorted(p for p in folder.rglob("*") if p.suffix.lower() in (*IMAGE_SUFFIXES, ".json"))
        if folder.is_dir()
        else []
    )
    # Images by name and size, sidecars by content (rewriting an identical folder changes
    # nothing).
    listing = [
        (str(p.relative_to(folder)), file_sha256(p) if p.suffix == ".json" else p.stat().st_size)
        for p in files
    ]
    inputs = {"images": json_sha256(listing)}
    kind, _, arg = config.source.partition(":")
    if kind == "jsonl" and Path(arg).is_file():
        inputs["jsonl"] = file_sha256(arg)
    return make_manifest("data", config_dict, inputs=inputs, seed=config.seed)


def manifest_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.manifest.json")


def build_vqa(config: BuildConfig) -> dict[str, Any]:
    """Build, audit and write the VQA set; returns the build report.

    Writes ``config.out`` (JSONL), ``<stem>.audit.json`` and ``<stem>.manifest.json`` beside it.
    """
    out = Path(config.out)
    out_dir = out.parent
    rng = random.Random(config.seed)
    skipped: Counter[str] = Counter()
    kind, _, arg = config.source.partition(":")
    if kind == "jsonl":
        if not Path(config.images).is_dir():
            raise VSFAError(f"image folder {config.images} does not exist or is not a folder")
        raw = _records_from_jsonl(arg, config, skipped)
        records = [{**r, "image": _portable(Path(r["image"]), out_dir)} for r in raw]
        n_images = len({r["image"] for r in records})
    else:
        images = _usable_images(config, skipped, rng)
        n_images = len(images)
        if kind == "metadata":
            slots = _slots_from_metadata(images, config, rng, skipped)
            source = "metadata"
        else:
            slots = _slots_for_model(images, config, rng)
            _answer_with_model(slots, arg, config)
            source = f"model:{arg}"
        empty = [s for s in slots if not (s.answer or "").strip()]
        if empty:
            skipped["empty_answer"] += len(empty)
            slots = [s for s in slots if (s.answer or "").strip()]
        records = [_record(s, i, source, out_dir) for i, s in enumerate(slots)]
    if not records:
        raise VSFAError(
            f"no VQA records could be built from {config.images} with --source {config.source} "
            f"(skipped: {dict(skipped) or 'none'})"
        )

    kept, report = audit_records(records, config.lexicon)
    report.dropped = not config.strict
    write_json_atomic(audit_report_path(out), report.to_dict())
    if config.strict and not report.clean:
        raise VSFAError(
            f"{out}: {report.summary()}; the VSFA set must be label-free "
            f"(report: {audit_report_path(out)})"
        )
    if not kept:
        raise VSFAError(f"every record was flagged by the audit ({report.summary()})")
    write_jsonl(out, kept)
    result = {
        "out": str(out),
        "images": n_images,
        "records": len(kept),
        "skipped": dict(skipped),
        "audit": {
            "total": report.total,
            "flagged": report.flagged,
            "by_category": report.by_category,
            "by_term": report.by_term,
            "report": str(audit_report_path(out)),
        },
    }
    manifest = build_manifest(config)
    manifest.update(complete=True, outputs={"data": file_sha256(out)}, report=result)
    write_json_atomic(manifest_path(out), manifest)
    return result
