"""The paper-style comparison table from several evaluation result folders.

Rows are (model, method); columns are the ASR of each benchmark, the mean ASR, the three-way
rates (refusal and other over harmful items, help over benign requests), CS, over-refusal and
capability. Runs of one (model, method) with different seeds are pooled into one row: the value
is the mean over seeds and the interval the hierarchical bootstrap of
:mod:`interp.eval.intervals` (seeds, then prompt-template clusters, then items; clipped to
[0, 1]) over the per-item values each ``metrics.json`` lists. A result folder written before
per-item values were recorded falls back to resampling the runs' values only (``interval``
``"seeds"``; one run keeps its own interval).

Each row also carries ``differences``: the paired difference (same items by key; same seeds
when both rows ran the same seeds) against the model's ``none`` row and against its
``control`` row, with its interval (:func:`interp.eval.intervals.paired_difference`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from interp.artifacts import read_json, write_json_atomic, write_text_atomic
from interp.errors import VSFAError
from interp.eval.intervals import INTERVALS, hierarchical_mean, paired_difference
from interp.eval.metrics import METRIC_NAMES, Metric

DIFFERENCE_METRICS = ("asr", "refusal", "other", "over_refusal", "capability")
REFERENCES = ("none", "control")
"""The rows every other row of a model is paired against, when present (``none`` is paired
with ``control`` once, as control minus none)."""


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


class _Runs:
    """The runs (seeds) of one row and their per-item values."""

    def __init__(self, runs: Sequence[dict[str, Any]]) -> None:
        self.runs = sorted(runs, key=lambda r: (r["label"].get("seed") is None,
                                                r["label"].get("seed") or 0))  # fmt: skip
        blocks = [run["benchmarks"] for run in self.runs]
        self.itemised = all("items" in b for blocks_ in blocks for b in blocks_.values())
        self.groups: dict[str, tuple[str, str]] = {}
        self.values: list[dict[str, dict[str, float]]] = []
        for run_blocks in blocks if self.itemised else []:
            values = {}
            for bench, block in run_blocks.items():
                for record in block["items"]:
                    self.groups[record["key"]] = (bench, str(record["cluster"]))
                    values[record["key"]] = record["values"]
            self.values.append(values)

    @property
    def seeds(self) -> list[Any]:
        return [run["label"].get("seed") for run in self.runs]

    def known(self, name: str) -> bool:
        """Whether every run has the metric (three-way rates are null for some judges)."""
        return all(run["summary"].get(name) is not None for run in self.runs)

    def per_seed(self, name: str, bench: str | None = None) -> list[dict[str, float]]:
        """Per run, ``{key: value}`` of metric ``name`` (on ``bench``, else on the benchmarks
        that run's summary averages)."""
        out = []
        for run, values in zip(self.runs, self.values):
            benches = [bench] if bench else run["summary"].get(f"{name}_benchmarks") or []
            out.append({k: v[name] for k, v in values.items()
                        if name in v and self.groups[k][0] in benches})  # fmt: skip
        return out

    def pooled(self, name: str, bench: str | None = None) -> Metric | None:
        if bench is None and not self.known(name):
            return None
        if not self.itemised:
            if bench is None:
                return seed_bootstrap([run["summary"].get(name) for run in self.runs])
            blocks = [run["benchmarks"].get(bench, {}) for run in self.runs]
            return seed_bootstrap([block.get(name) for block in blocks])
        result = hierarchical_mean(self.per_seed(name, bench), self.groups)
        return None if result is None else {k: result[k] for k in ("value", "ci_low", "ci_high",
                                                                      "n", "n_seeds")}  # fmt: skip


def seed_bootstrap(
    metrics: Sequence[Metric | None], *, n_boot: int = 1000, seed: int = 0
) -> Metric | None:
    """One metric from runs that list no per-item values: the mean of their values with a
    percentile bootstrap over the runs, clipped to [0, 1] (one run keeps its own interval)."""
    present = [m for m in metrics if m is not None]
    if not present:
        return None
    if len(present) == 1:
        return dict(present[0])
    values = np.array([m["value"] for m in present], dtype=float)
    draws = values[np.random.default_rng(seed).integers(0, len(values), (n_boot, len(values)))]
    low, high = np.quantile(draws.mean(1), [0.025, 0.975])
    mean = float(values.mean())
    return {"value": mean, "ci_low": max(min(float(low), mean), 0.0),
            "ci_high": min(max(float(high), mean), 1.0), "n": len(values)}  # fmt: skip


def difference(a: _Runs, b: _Runs, name: str) -> dict[str, Any] | None:
    """Row ``a`` minus row ``b`` on metric ``name`` (paired by item; by seed when both rows ran
    the same several seeds)."""
    if not (a.itemised and b.itemised and a.known(name) and b.known(name)):
        return None
    paired = len(a.seeds) > 1 and a.seeds == b.seeds
    groups = {**b.groups, **a.groups}
    return paired_difference(a.per_seed(name), b.per_seed(name), groups, paired_seeds=paired)


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
    runs = {key: _Runs(group) for key, group in groups.items()}
    rows = []
    for (model, method), row_runs in runs.items():
        benches = list(dict.fromkeys(b for run in row_runs.runs for b in run["benchmarks"]))
        asr_by_benchmark = {bench: row_runs.pooled("asr", bench) for bench in benches}
        judges = sorted({run.get("judge", {}).get("name", "?") for run in row_runs.runs})
        row: dict[str, Any] = {
            "model": model,
            "method": method,
            "seeds": row_runs.seeds,
            "judge": ",".join(judges),
            "interval": "hierarchical" if row_runs.itemised else "seeds",
            "asr_by_benchmark": {b: m for b, m in asr_by_benchmark.items() if m is not None},
        }
        for name in METRIC_NAMES:
            row[name] = row_runs.pooled(name)
        row["skipped"] = sum(int(run["summary"].get("skipped", 0)) for run in row_runs.runs)
        row["differences"] = {
            ref: {name: difference(row_runs, runs[(model, ref)], name)
                  for name in DIFFERENCE_METRICS}
            for ref in REFERENCES
            if ref != method and (model, ref) in runs and (method, ref) != REFERENCES
        }  # fmt: skip
        rows.append(row)
    return rows


def format_metric(metric: Mapping[str, Any] | None, percent: bool) -> str:
    if metric is None:
        return "-"
    if percent:
        return (
            f"{100 * metric['value']:.1f}% "
            f"[{100 * metric['ci_low']:.1f}, {100 * metric['ci_high']:.1f}]"
        )
    return f"{metric['value']:.2f} [{metric['ci_low']:.2f}, {metric['ci_high']:.2f}]"


def format_points(metric: Mapping[str, Any] | None) -> str:
    """A difference of rates in signed points with its interval: ``-49.4 [-57.5, -41.4]``."""
    if metric is None:
        return "-"
    low, value, high = (100 * metric[k] for k in ("ci_low", "value", "ci_high"))
    return f"{value:+.1f} [{low:+.1f}, {high:+.1f}]"


def _differences_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        for ref, diffs in row.get("differences", {}).items():
            if any(diffs.values()):
                cells = [row["model"], f"{row['method']} - {ref}"]
                cells += [format_points(diffs[n]) for n in DIFFERENCE_METRICS]
                lines.append("| " + " | ".join(cells) + " |")
    if not lines:
        return []
    header = ["Model", "Difference", "ASR", "Refusal", "Other", "Over-refusal", "Capability"]
    return ["", "Paired differences (points; same items, paired by item key):", "",
            "| " + " | ".join(header) + " |", "|" + "---|" * len(header), *lines]  # fmt: skip


def render_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The table as markdown, the paired differences, and a note on judges and brackets."""
    benches = list(dict.fromkeys(b for row in rows for b in row["asr_by_benchmark"]))
    header = ["Model", "Method", "Runs (seeds)", *[f"ASR {b}" for b in benches], "Mean ASR",
              "Refusal", "Other", "CS", "Over-refusal", "Help", "Capability"]  # fmt: skip
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
            format_metric(row.get("refusal"), True),
            format_metric(row.get("other"), True),
            format_metric(row["cs"], False),
            format_metric(row["over_refusal"], True),
            format_metric(row.get("help"), True),
            format_metric(row["capability"], True),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _differences_table(rows)
    judges = sorted({row["judge"] for row in rows})
    fallback = [r["method"] for r in rows if r.get("interval") == "seeds" and len(r["seeds"]) > 1]
    notes = [
        "",
        f"Judge: {', '.join(judges)}"
        + (" (rows use different judges: not comparable)" if len(judges) > 1 else "")
        + ". ASR and over-refusal: lower is better; CS and capability: higher is better.",
        "Refusal and other: shares of harmful items; help: share of benign requests (items "
        "without a reference answer); '-' where the judge cannot tell other replies apart.",
        f"Brackets: {INTERVALS}.",
        "Capability is an offline normalised-match substitute for LLM grading.",
    ]
    if fallback:
        notes.append(f"Rows {', '.join(fallback)}: result folders without per-item values, "
                     "brackets resample the runs only.")  # fmt: skip
    return "\n".join(lines + notes) + "\n"


def write_table(result_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> Path:
    """Write ``table.md`` and ``table.json`` for ``result_dirs`` into ``out_dir``."""
    rows = compare(result_dirs)
    out = Path(out_dir)
    write_json_atomic(
        out / "table.json",
        {"rows": rows, "sources": [str(d) for d in result_dirs], "intervals": INTERVALS},
    )
    write_text_atomic(out / "table.md", render_markdown(rows))
    return out
