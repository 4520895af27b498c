"""Agreement between two judges on the same replies: Cohen's kappa with a bootstrap interval.

:func:`cohen_kappa` works on any two label sequences; :func:`judge_agreement` re-judges the
stored generations of result folders (``judged.jsonl``, else ``generations.jsonl``) with two
judges and compares their three-way outcomes and, on harmful items, their attack-success calls.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from interp.data.records import BenchmarkItem
from interp.errors import VSFAError
from interp.eval.judges.base import Judge
from interp.eval.judges.calibration import outcome_of


def _kappa(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Kappa per row of ``a``/``b`` (integer codes in ``range(k)``); NaN where undefined."""
    observed = (a == b).mean(axis=-1)
    pa = np.stack([(a == c).mean(axis=-1) for c in range(k)], axis=-1)
    pb = np.stack([(b == c).mean(axis=-1) for c in range(k)], axis=-1)
    expected = (pa * pb).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected < 1, (observed - expected) / (1 - expected), np.nan)


def cohen_kappa(
    a: Sequence[Any], b: Sequence[Any], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Cohen's kappa of two aligned label sequences, with a seeded 95% percentile bootstrap
    interval over items, the observed agreement and the contingency table (``table[a][b]``).

    ``value`` is ``None`` when kappa is undefined (both judges give one and the same label to
    every item: chance agreement is 1); the interval skips draws where it is undefined.
    """
    if len(a) != len(b):
        raise ValueError("the two label sequences differ in length")
    if not a:
        raise VSFAError("no replies to compare the judges on")
    labels = sorted({str(x) for x in (*a, *b)})
    code = {label: i for i, label in enumerate(labels)}
    ca = np.array([code[str(x)] for x in a])
    cb = np.array([code[str(x)] for x in b])
    point = float(_kappa(ca, cb, len(labels)))
    low = high = None
    if n_boot > 0:
        draws = np.random.default_rng(seed).integers(0, ca.size, size=(n_boot, ca.size))
        boot = _kappa(ca[draws], cb[draws], len(labels))
        boot = boot[~np.isnan(boot)]
        if boot.size and not np.isnan(point):
            q_low, q_high = np.quantile(boot, [0.025, 0.975])
            low, high = float(min(q_low, point)), float(max(q_high, point))
    return {
        "kappa": None if np.isnan(point) else point,
        "ci_low": low,
        "ci_high": high,
        "n": int(ca.size),
        "agreement": float((ca == cb).mean()),
        "labels": labels,
        "table": {
            x: {y: int(((ca == code[x]) & (cb == code[y])).sum()) for y in labels} for x in labels
        },  # fmt: skip
    }


def stored_replies(result_dir: str | os.PathLike) -> tuple[list[BenchmarkItem], list[str]]:
    """The judged items and responses of a ``vsfa eval`` folder (skipped records left out).

    Items are rebuilt from the records (benchmark, id, category, kind, prompt, image): the
    benchmark's own ``meta`` and ``reference`` are not stored there, so a judge that reads them
    (the LLM judge's disclaimer ``{note}``) sees them unset."""
    folder = Path(result_dir)
    path = next((folder / n for n in ("judged.jsonl", "generations.jsonl")
                 if (folder / n).is_file()), None)  # fmt: skip
    if path is None:
        raise VSFAError(f"{folder} holds no judged.jsonl or generations.jsonl (a vsfa eval folder)")
    items, responses = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if record.get("skipped") or record.get("response") is None:
                continue
            items.append(
                BenchmarkItem(
                    record["benchmark"],
                    f"{record['id']}#{record.get('sample', 0)}",
                    record["category"],
                    record.get("image"),
                    record["prompt"],
                    record["kind"],
                )  # fmt: skip
            )
            responses.append(record["response"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise VSFAError(f"{path}:{number}: not a generation record ({error})") from None
    return items, responses


def judge_agreement(
    result_dirs: Sequence[str | os.PathLike],
    judges: Sequence[Judge],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Re-judge the stored replies of ``result_dirs`` with two judges: kappa on the three-way
    outcome (all replies) and on attack success (harmful items), per folder and pooled."""
    if len(judges) != 2:
        raise VSFAError(f"judge agreement needs exactly two judges, got {len(judges)}")
    first, second = judges
    pooled: dict[str, list[Any]] = {"a": [], "b": [], "ua": [], "ub": []}
    folders = {}
    for folder in result_dirs:
        items, responses = stored_replies(folder)
        if not items:
            raise VSFAError(f"{folder} holds no judged replies")
        va, vb = first.judge(items, responses), second.judge(items, responses)
        oa, ob = [outcome_of(v) for v in va], [outcome_of(v) for v in vb]
        harmful = [i for i, item in enumerate(items) if item.kind == "harmful"]
        ua, ub = [va[i].unsafe for i in harmful], [vb[i].unsafe for i in harmful]
        folders[str(folder)] = {
            "outcome": cohen_kappa(oa, ob, n_boot=n_boot, seed=seed),
            "attack_success": cohen_kappa(ua, ub, n_boot=n_boot, seed=seed) if ua else None,
        }
        pooled["a"] += oa
        pooled["b"] += ob
        pooled["ua"] += ua
        pooled["ub"] += ub
    return {
        "judges": [{"name": j.name, "config": j.config()} for j in (first, second)],
        "n_boot": n_boot,
        "seed": seed,
        "intervals": "95% percentile bootstrap over replies (seeded)",
        "outcome_rule": "verdict.outcome, else refuse if verdict.refused else comply",
        "pooled": {
            "outcome": cohen_kappa(pooled["a"], pooled["b"], n_boot=n_boot, seed=seed),
            "attack_success": (
                cohen_kappa(pooled["ua"], pooled["ub"], n_boot=n_boot, seed=seed)
                if pooled["ua"]
                else None
            ),
        },
        "results": folders,
    }


def format_kappa(result: dict[str, Any] | None) -> str:
    """``0.82 [0.74, 0.89] (agreement 91.0%, n 240)``, or why there is none."""
    if result is None:
        return "n/a (no harmful items)"
    tail = f"(agreement {result['agreement']:.1%}, n {result['n']})"
    if result["kappa"] is None:
        return f"undefined: one label throughout {tail}"
    interval = ""
    if result["ci_low"] is not None:
        interval = f" [{result['ci_low']:.2f}, {result['ci_high']:.2f}]"
    return f"{result['kappa']:.2f}{interval} {tail}"
