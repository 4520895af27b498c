"""Screening candidate training data by its predicted persona shift (``vsfa data screen``).

After persona vectors (arXiv 2507.21509): for one VQA record, the **projection difference** is
the mean projection of the residual at the response tokens onto the unit persona vector when
the model reads the dataset's answer, minus the same when it reads its own (greedy) answer to the
same question. Fine-tuning on the record pulls the model from its own answer towards the
dataset's, so a positive difference predicts a shift towards the persona (the vigilant side of
the vector). An image's score is the mean over its records.

:func:`screen` scores a VQA JSONL (``--data``) record by record, or an image folder
(``--images``: its VQA set is built first, exactly as ``vsfa data build`` builds it, into
``OUT/vqa.jsonl``) image by image, and writes ``OUT/screen.jsonl`` ranked from the highest
predicted shift, ``OUT/records.jsonl`` (every record's answers and projections),
``OUT/screen.html`` (histogram) and ``OUT/screen.json`` (summary, manifest).
:func:`select_records` writes the VQA records of the top or bottom ``n`` ranked units.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from interp.artifacts import make_manifest, read_json, write_json_atomic, write_text_atomic
from interp.errors import VSFAError
from interp.monitor.config import ScreenConfig

SCREEN_FILE = "screen.jsonl"
SUMMARY_FILE = "screen.json"
HISTOGRAM_FILE = "screen.html"
VQA_FILE = "vqa.jsonl"
RECORDS_FILE = "records.jsonl"


@torch.no_grad()
def response_projections(
    vlm: Any, examples: Sequence[Any], responses: Sequence[str], unit: torch.Tensor, hook: str,
    *, batch_size: int = 16,
) -> list[float]:  # fmt: skip
    """Per example: mean over its response tokens of ``residual . unit`` at ``hook`` when the
    conversation ends with ``responses[i]`` (the tokens the training loss is taken on)."""
    from interp.hooks import run_with_cache
    from interp.images import open_image
    from interp.train.data import IGNORE_INDEX, collate, encode_example

    values: list[float] = []
    unit = unit.to(vlm.device, torch.float32)
    for start in range(0, len(examples), batch_size):
        encoded = []
        for example, response in zip(
            examples[start : start + batch_size], responses[start : start + batch_size]
        ):
            image = open_image(example.image) if example.image else None
            encoded.append(encode_example(vlm, image, example.prompt, response))
        batch = {
            k: v.to(vlm.device) for k, v in collate(encoded, vlm.tokenizer.pad_token_id).items()
        }
        for key, value in batch.items():
            if torch.is_floating_point(value):
                batch[key] = value.to(vlm.dtype)
        mask = batch.pop("labels") != IGNORE_INDEX
        resid = run_with_cache(vlm, batch, [hook])[hook].float()
        projected = (resid @ unit) * mask
        values += (projected.sum(1) / mask.sum(1).clamp_min(1)).tolist()
    return values


def own_answers(
    vlm: Any, examples: Sequence[Any], *, max_new_tokens: int, batch_size: int
) -> list[str]:  # fmt: skip
    """The model's greedy answer to every example's question (an empty answer becomes ``.``,
    so it still has a response token)."""
    from interp.images import open_image

    answers: list[str] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        images = [open_image(e.image) if e.image else None for e in chunk]
        answers += vlm.generate(images, [e.prompt for e in chunk], max_new_tokens=max_new_tokens)
    return [answer or "." for answer in answers]


def _vqa_path(config: ScreenConfig, out: Path) -> Path:
    if config.data is not None:
        path = Path(config.data)
        if not path.is_file():
            raise VSFAError(f"--data {path} does not exist")
        return path
    from interp.data.vqa import BuildConfig, build_vqa

    target = out / VQA_FILE
    build_vqa(BuildConfig(images=config.images, out=str(target), source=config.source,
                          quiet=config.quiet, device=config.device))  # fmt: skip
    return target


def _units(records: list[dict[str, Any]], by_image: bool) -> list[dict[str, Any]]:
    """Records grouped into ranked units (one per image, or one per record)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record["image"] if by_image else record["id"], []).append(record)
    units = []
    for key, rows in groups.items():
        shift = sum(r["shift"] for r in rows) / len(rows)
        units.append({
            "image" if by_image else "id": key, "shift": shift,
            "projection_dataset": sum(r["projection_dataset"] for r in rows) / len(rows),
            "projection_own": sum(r["projection_own"] for r in rows) / len(rows),
            "records": [r["id"] for r in rows], "n_records": len(rows),
        })  # fmt: skip
    units.sort(key=lambda u: -u["shift"])
    for rank, unit in enumerate(units, 1):
        unit["rank"] = rank
    return units


def histogram(units: Sequence[dict[str, Any]], title: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure(go.Histogram(x=[u["shift"] for u in units], nbinsx=40))
    fig.update_layout(
        title=title, xaxis={"title": "predicted persona shift (projection difference)"},
        yaxis={"title": "count"}, template="plotly_white",
    )  # fmt: skip
    return fig


def screen(config: ScreenConfig) -> dict[str, Any]:
    """Score every record (and image) by its predicted persona shift; see the module doc."""
    from interp.data.jsonl import read_vqa_jsonl
    from interp.models import load_vlm
    from interp.monitor.signals import load_signal
    from interp.train.data import read_vqa_examples

    started = time.time()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    signal = load_signal(config.persona, hook=config.hook)
    vqa = _vqa_path(config, out)
    examples = read_vqa_examples(vqa)
    raw = read_vqa_jsonl(vqa)
    if not examples:
        raise VSFAError(f"{vqa} holds no VQA records to screen")
    vlm = load_vlm(config.model, device=config.device, dtype=config.model_dtype)
    vlm.model.eval()
    options = {"batch_size": config.batch_size}
    own, dataset, mine = [], [], []
    chunk = max(config.batch_size, 64)
    for start in tqdm(range(0, len(examples), chunk), desc="screening", disable=config.quiet):
        part = examples[start : start + chunk]
        answers = own_answers(vlm, part, max_new_tokens=config.max_new_tokens, **options)
        own += answers
        dataset += response_projections(
            vlm, part, [e.response for e in part], signal.unit, signal.hook, **options
        )
        mine += response_projections(vlm, part, answers, signal.unit, signal.hook, **options)
    records = [
        {
            "id": e.id,
            "image": r["image"],
            "question": e.prompt,
            "answer": e.response,
            "own_answer": a,
            "projection_dataset": d,
            "projection_own": m,
            "shift": d - m,
        }  # fmt: skip
        for e, r, a, d, m in zip(examples, raw, own, dataset, mine)
    ]
    by_image = config.images is not None
    units = _units(records, by_image)
    write_text_atomic(out / SCREEN_FILE, "".join(json.dumps(u) + "\n" for u in units))
    write_text_atomic(out / RECORDS_FILE, "".join(json.dumps(r) + "\n" for r in records))
    what = "images" if by_image else "records"
    fig = histogram(units, f"predicted persona shift of {len(units)} {what}")
    write_text_atomic(out / HISTOGRAM_FILE, fig.to_html(include_plotlyjs=True))
    shifts = torch.tensor([u["shift"] for u in units])
    summary = {
        "unit": "image" if by_image else "record", "n_units": len(units),
        "n_records": len(records), "vqa": str(vqa), "hook": signal.hook,
        "persona": str(config.persona), "model": config.model,
        "shift": {"mean": float(shifts.mean()), "std": float(shifts.std()) if len(units) > 1
                  else 0.0, "min": float(shifts.min()), "max": float(shifts.max())},
        "rule": "shift = mean over response tokens of (residual . unit persona vector) with the "
                "dataset's answer minus with the model's own greedy answer; per image the mean "
                "over its records; ranked from the highest",
        "manifest": make_manifest("data.screen", dataclasses.asdict(config), complete=True,
                                  seconds=round(time.time() - started, 3)),
    }  # fmt: skip
    write_json_atomic(out / SUMMARY_FILE, summary)
    if config.select:
        summary["selected"] = {
            end: str(select_records(out, config.select, end=end,
                                    out=vqa.parent / f"{end}_{config.select}.jsonl"))
            for end in ("top", "bottom")
        }  # fmt: skip
        write_json_atomic(out / SUMMARY_FILE, summary)
    return summary


def select_records(screen_dir: str | Path, n: int, *, end: str, out: str | Path) -> Path:
    """Write the VQA records of the ``n`` highest (``end="top"``) or lowest (``"bottom"``)
    ranked units of a screen folder to ``out`` (beside the screened VQA file, so relative image
    paths still resolve)."""
    from interp.data.jsonl import write_jsonl

    screen_dir = Path(screen_dir)
    summary = read_json(screen_dir / SUMMARY_FILE)
    lines = (screen_dir / SCREEN_FILE).read_text(encoding="utf-8").splitlines()
    units = [json.loads(line) for line in lines if line]
    if end not in ("top", "bottom"):
        raise VSFAError(f"end {end!r}: expected top or bottom")
    chosen = units[:n] if end == "top" else units[-n:]
    keep = {rid for unit in chosen for rid in unit["records"]}
    vqa = Path(summary["vqa"])
    records = [json.loads(line) for line in vqa.read_text(encoding="utf-8").splitlines() if line]
    target = Path(out)
    if target.parent.resolve() != vqa.parent.resolve():
        raise VSFAError(f"write the selection beside {vqa} (its image paths are relative to it)")
    return write_jsonl(target, [r for r in records if r["id"] in keep])
