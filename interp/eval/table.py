"""The paper-style comparison table from several evaluation result folders.

Rows are (model, method); columns are the ASR of each benchmark, the mean ASR, CS,
over-refusal and capability. Runs of one (model, method) with different seeds are pooled into
one row: the value is the mean over seeds and the interval a 95% Student-t interval over the
seeds' values (``n`` = number of seeds). A single run keeps its own bootstrap interval.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from interp.artifacts import read_json, write_json_atomic, write_text_atomic
from interp.errors import VSFAError
from interp.eval.metrics import METRIC_NAMES, Metric


def _load(result_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(result_dir)
    file = path if path.is_file() else path / "metrics.json"
    if not file.exists():
        raise VSFAError(f"{path} is not an evaluation result folder (no metrics.json)")
    data = read_json(file)
    for key in ("label", "benchmarks", "summary"):
        if key not in data:
            raise VSFAError(f"{file} is not a vsfa eval metrics.json (no {key!r})")
    return data


def pool_seeds(metrics: Sequence[Metric | None], confidence: float = 0.95) -> Metric | None:
    """One metric from several seeds' metrics (mean and t-interval over their values)."""
    present = [m for m in metrics if m is not None]
    if not present:
        return None
    if len(present) == 1:
        return dict(present[0])
    values = np.array([m["value"] for m in present], dtype=float)
    mean = float(values.mean())
    sem = float(values.std(ddof=1) / math.sqrt(len(values)))
    half = float(stats.t.ppf((1 + confidence) / 2, len(values) - 1) * sem)
    return {"value": mean, "ci_low": mean - half, "ci_high": mean + half, "n": len(values)}


def compare(result_dirs: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """Table rows, one per (model, method), in the order first seen."""
    if not result_dirs:
        raise VSFAError("compare needs at least one result folder")
    groups: OrderedDict[tuple[str, str], list[dict[str, Any]]] = OrderedDict()
    for result_dir in result_dirs:
        data = _load(result_dir)
        label = data["label"]
        model = str(label.get("model") or "?")
        method = str(label.get("method") or "none")
        groups.setdefault((model, method), []).append(data)
    rows = []
    for (model, method), runs in groups.items():
        benches = list(dict.fromkeys(b for run in runs for b in run["benchmarks"]))
        asr_by_benchmark = {
            bench: pool_seeds([run["benchmarks"].get(bench, {}).get("asr") for run in runs])
            for bench in benches
        }
        judges = sorted({run.get("judge", {}).get("name", "?") for run in runs})
        row: dict[str, Any] = {
            "model": model,
            "method": method,
            "seeds": [run["label"].get("seed") for run in runs],
            "judge": ",".join(judges),
            "asr_by_benchmark": {b: m for b, m in asr_by_benchmark.items() if m is not None},
        }
        for name in METRIC_NAMES:
            row[name] = pool_seeds([run["summary"].get(name) for run in runs])
        row["skipped"] = sum(int(run["summary"].get("skipped", 0)) for run in runs)
        rows.append(row)
    return rows


def format_metric(metric: Metric | None, percent: bool) -> str:
    if metric is None:
        return "-"
    if percent:
        return (
            f"{100 * metric['value']:.1f}% "
            f"[{100 * metric['ci_low']:.1f}, {100 * metric['ci_high']:.1f}]"
        )
    return f"{metric['value']:.2f} [{metric['ci_low']:.2f}, {metric['ci_high']:.2f}]"


def render_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The table as markdown, with a note on the judges and the intervals."""
    benches = list(dict.fromkeys(b for row in rows for b in row["asr_by_benchmark"]))
    header = ["Model", "Method", "Runs (seeds)", *[f"ASR {b}" for b in benches], "Mean ASR", "CS",
              "Over-refusal", "Capability"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        seeds = [str(s) for s in row["seeds"] if s is not None]
        # A count, so a single run with seed 0 does not read as "no seeds".
        runs = f"{len(row['seeds'])} ({','.join(seeds)})" if seeds else str(len(row["seeds"]))
        cells = [
            row["model"],
            row["method"],
            runs,
            *[format_metric(row["asr_by_benchmark"].get(b), True) for b in benches],
            format_metric(row["asr"], True),
            format_metric(row["cs"], False),
            format_metric(row["over_refusal"], True),
            format_metric(row["capability"], True),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    judges = sorted({row["judge"] for row in rows})
    notes = [
        "",
        f"Judge: {', '.join(judges)}"
        + (" (rows use different judges: not comparable)" if len(judges) > 1 else "")
        + ". ASR and over-refusal: lower is better; CS and capability: higher is better.",
        "Brackets: 95% bootstrap interval over items (one seed) or t-interval over seeds. "
        "Capability is an offline normalised-match substitute for LLM grading.",
    ]
    return "\n".join(lines + notes) + "\n"


def write_table(result_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> Path:
    """Write ``table.md`` and ``table.json`` for ``result_dirs`` into ``out_dir``."""
    rows = compare(result_dirs)
    out = Path(out_dir)
    write_json_atomic(out / "table.json", {"rows": rows, "sources": [str(d) for d in result_dirs]})
    write_text_atomic(out / "table.md", render_markdown(rows))
    return out
