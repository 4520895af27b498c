"""Calibrate a judge against human-labelled replies: precision, recall and F1 with intervals.

A label file is JSONL, one reply per line::

    {"prompt": "...", "response": "...", "label": "refuse|comply|other",
     "kind": "refuse_unable", "item_kind": "harmful", "split": "dev", "id": "cal-001"}

``prompt``, ``response`` and ``label`` are required. ``kind`` tags the reply's style (metrics are
also reported per kind), ``item_kind`` says whether the request was ``harmful`` (default) or
``benign`` (a judge may read it, e.g. the LLM judge's ``{kind}`` field), ``split`` lets a file hold
out part of its replies (the numbers are reported for the whole file and for each split). The
workbench ships its own set (:data:`DEFAULT_LABELS`).

A judge's reading of a reply is its verdict's ``outcome``; a judge that leaves ``outcome`` unset
is read as ``refuse`` when it says ``refused`` and ``comply`` otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from interp.data.jsonl import parse_json_object, read_lines
from interp.data.records import BenchmarkItem
from interp.errors import VSFAError
from interp.eval.judges.base import OUTCOMES, Judge, Verdict

DEFAULT_LABELS = Path(__file__).parent / "data" / "calibration.jsonl"
"""The shipped calibration set: replies written for this workbench, labelled refuse, comply or
other, tagged by style (``kind``) and split into ``dev`` and held-out ``test`` replies."""


@dataclass(frozen=True)
class LabelledReply:
    """One labelled reply of a label file."""

    id: str
    prompt: str
    response: str
    label: str
    kind: str = ""
    item_kind: str = "harmful"
    split: str = ""

    def item(self) -> BenchmarkItem:
        """The reply's request as a benchmark item (for judges that read the request)."""
        return BenchmarkItem(
            "labels",
            self.id,
            self.kind or "labels",
            None,
            self.prompt,
            self.item_kind,  # type: ignore[arg-type]
        )


def load_labels(path: str | os.PathLike | None = None) -> list[LabelledReply]:
    """The replies of a label file (default: the shipped set); a bad line is a one-line error."""
    path = Path(path).expanduser() if path is not None else DEFAULT_LABELS
    if not path.is_file():
        raise VSFAError(f"--labels {path} does not exist")
    replies = []
    for number, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        data = parse_json_object(line, where)
        for key in ("prompt", "response", "label"):
            if not isinstance(data.get(key), str):
                raise VSFAError(f"{where}: field {key!r} (a string) is missing")
        if data["label"] not in OUTCOMES:
            raise VSFAError(f"{where}: label {data['label']!r} is not one of {', '.join(OUTCOMES)}")
        item_kind = data.get("item_kind") or "harmful"
        if item_kind not in ("harmful", "benign"):
            raise VSFAError(f"{where}: item_kind {item_kind!r} is not harmful or benign")
        replies.append(
            LabelledReply(
                id=str(data.get("id") or f"line-{number}"),
                prompt=data["prompt"],
                response=data["response"],
                label=data["label"],
                kind=str(data.get("kind") or ""),
                item_kind=item_kind,
                split=str(data.get("split") or ""),
            )  # fmt: skip
        )
    if not replies:
        raise VSFAError(f"--labels {path} holds no labelled replies")
    return replies


def outcome_of(verdict: Verdict) -> str:
    """A verdict's three-way reading: its ``outcome``, else refuse/comply from ``refused``."""
    if verdict.outcome is not None:
        return verdict.outcome
    return "refuse" if verdict.refused else "comply"


def _interval(values: np.ndarray, point: float | None) -> tuple[float | None, float | None]:
    draws = values[~np.isnan(values)]
    if point is None or draws.size == 0:
        return None, None
    low, high = np.quantile(draws, [0.025, 0.975])
    return float(min(low, point)), float(max(high, point))


def _stat(point: float | None, draws: np.ndarray, n: int) -> dict[str, Any]:
    low, high = _interval(draws, point)
    return {"value": point, "ci_low": low, "ci_high": high, "n": int(n)}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def _point(value: np.ndarray) -> float | None:
    return None if np.isnan(value) else float(value)


def classification_metrics(
    truth: Sequence[str], predicted: Sequence[str], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Per label precision, recall, F1 (each ``{value, ci_low, ci_high, n}``), accuracy, the
    confusion matrix (``confusion[true][predicted]``) and the refusal-detection view
    (``refusal_recall``: refusals read as refusals; ``false_alarm``: compliant replies read as
    refusals). Intervals: seeded percentile bootstrap over replies, 95%; ``None`` where a value
    is undefined (no reply with that label or prediction)."""
    if len(truth) != len(predicted):
        raise ValueError("truth and predicted differ in length")
    index = {label: i for i, label in enumerate(OUTCOMES)}
    t = np.array([index[x] for x in truth], dtype=int)
    p = np.array([index[x] for x in predicted], dtype=int)
    n = t.size
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(max(n_boot, 0), n)) if n else np.zeros((0, 0), int)
    tb, pb = t[draws], p[draws]
    full_t, full_p = t[None, :], p[None, :]

    def counts(tt: np.ndarray, pp: np.ndarray, label: int) -> tuple[np.ndarray, ...]:
        tp = ((tt == label) & (pp == label)).sum(axis=1)
        return tp, (pp == label).sum(axis=1), (tt == label).sum(axis=1)

    per_label = {}
    for label, i in index.items():
        tp, pred_n, true_n = counts(full_t, full_p, i)
        btp, bpred, btrue = counts(tb, pb, i)
        precision, recall = _ratio(tp, pred_n)[0], _ratio(tp, true_n)[0]
        bprec, brec = _ratio(btp, bpred), _ratio(btp, btrue)
        f1 = _ratio(2 * tp, pred_n + true_n)[0]
        bf1 = _ratio(2 * btp, bpred + btrue)
        per_label[label] = {
            "support": int(true_n[0]),
            "predicted": int(pred_n[0]),
            "precision": _stat(_point(precision), bprec, pred_n[0]),
            "recall": _stat(_point(recall), brec, true_n[0]),
            "f1": _stat(_point(f1), bf1, true_n[0] + pred_n[0]),
        }
    accuracy = float((t == p).mean()) if n else None
    refuse, comply = index["refuse"], index["comply"]
    caught, refusals = counts(full_t, full_p, refuse)[0], (t == refuse).sum()
    alarms = ((full_t == comply) & (full_p == refuse)).sum(axis=1)
    compliant = (t == comply).sum()
    b_caught = ((tb == refuse) & (pb == refuse)).sum(axis=1)
    b_alarms = ((tb == comply) & (pb == refuse)).sum(axis=1)
    return {
        "n": int(n),
        "accuracy": _stat(accuracy, (tb == pb).mean(axis=1) if n else np.array([]), n),
        "labels": per_label,
        "confusion": {
            a: {b: int(((t == index[a]) & (p == index[b])).sum()) for b in OUTCOMES}
            for a in OUTCOMES
        },
        "refusal_recall": _stat(
            _point(_ratio(caught, np.array([refusals]))[0]),
            _ratio(b_caught, (tb == refuse).sum(axis=1)),
            refusals,
        ),  # fmt: skip
        "false_alarm": _stat(
            _point(_ratio(alarms, np.array([compliant]))[0]),
            _ratio(b_alarms, (tb == comply).sum(axis=1)),
            compliant,
        ),  # fmt: skip
    }


def check_judge(
    judge: Judge,
    replies: Sequence[LabelledReply],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    source: str | None = None,
) -> dict[str, Any]:
    """Judge ``replies`` and compare with their labels: the whole file, each split and each kind,
    plus every disagreement (``id, kind, split, label, predicted, judge_label, response``)."""
    verdicts = judge.judge([r.item() for r in replies], [r.response for r in replies])
    if len(verdicts) != len(replies):
        raise RuntimeError(
            f"judge {judge.name} returned {len(verdicts)} verdicts for {len(replies)} replies"
        )
    predicted = [outcome_of(v) for v in verdicts]

    def block(selected: list[int]) -> dict[str, Any]:
        return classification_metrics(
            [replies[i].label for i in selected], [predicted[i] for i in selected],
            n_boot=n_boot, seed=seed,
        )  # fmt: skip

    every = list(range(len(replies)))
    groups = lambda key: sorted({getattr(r, key) for r in replies if getattr(r, key)})  # noqa: E731
    return {
        "judge": {"name": judge.name, "config": judge.config()},
        "labels_file": source,
        "n_boot": n_boot,
        "seed": seed,
        "intervals": "95% percentile bootstrap over replies (seeded)",
        "outcome_rule": "verdict.outcome, else refuse if verdict.refused else comply",
        "judge_gives_outcome": sum(v.outcome is not None for v in verdicts),
        "all": block(every),
        "splits": {s: block([i for i in every if replies[i].split == s]) for s in groups("split")},
        "kinds": {k: block([i for i in every if replies[i].kind == k]) for k in groups("kind")},
        "disagreements": [
            {
                **{k: v for k, v in asdict(replies[i]).items() if k != "prompt"},
                "predicted": predicted[i],
                "judge_label": verdicts[i].label,
            }
            for i in every
            if predicted[i] != replies[i].label
        ],
    }


def _pct(stat: dict[str, Any] | None) -> str:
    if not stat or stat["value"] is None:
        return "n/a"
    if stat["ci_low"] is None:
        return f"{stat['value']:.1%}"
    return f"{stat['value']:.1%} [{stat['ci_low']:.1%}, {stat['ci_high']:.1%}]"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split()) or "(empty)"
    return text if len(text) <= width else text[: width - 3] + "..."


def _block_lines(name: str, block: dict[str, Any]) -> list[str]:
    lines = [f"{name} (n {block['n']}): accuracy {_pct(block['accuracy'])}"]
    lines.append(f"  {'label':7s} {'n':>4s}  {'precision':26s} {'recall':26s} F1")
    for label, row in block["labels"].items():
        if not row["support"] and not row["predicted"]:
            continue
        lines.append(
            f"  {label:7s} {row['support']:4d}  {_pct(row['precision']):26s} "
            f"{_pct(row['recall']):26s} {_pct(row['f1'])}"
        )
    lines.append(
        f"  refusal recall {_pct(block['refusal_recall'])}; false alarms "
        f"{_pct(block['false_alarm'])} (compliant replies read as refusals)"
    )
    lines.append("  confusion (rows: label, columns: judge): " + " ".join(OUTCOMES))
    for label, row in block["confusion"].items():
        lines.append(f"    {label:7s} " + " ".join(f"{row[p]:6d}" for p in OUTCOMES))
    return lines


def render_check(report: dict[str, Any], show: int = 20) -> str:
    """The report of :func:`check_judge` as text: the whole file and each split (per label
    precision, recall, F1, the refusal view and the confusion matrix), each kind, and the first
    ``show`` disagreements as a table."""
    judge = report["judge"]
    source = judge["config"].get("phrases_source") or judge["config"].get("template_name") or ""
    lines = [
        f"judge {judge['name']}{f' ({source})' if source else ''} on {report['all']['n']} "
        f"labelled replies ({report['labels_file']}); {report['intervals']}, "
        f"{report['n_boot']} resamples, seed {report['seed']}",
        "",
        *_block_lines("all", report["all"]),
    ]
    for split, block in report["splits"].items():
        lines += ["", *_block_lines(f"split {split}", block)]
    if report["kinds"]:
        lines += ["", f"per kind: {'kind':28s} {'n':>4s}  recall of its label(s)"]
        for kind, block in report["kinds"].items():
            recalls = ", ".join(
                f"{label} {_pct(row['recall'])}"
                for label, row in block["labels"].items()
                if row["support"]
            )
            lines.append(f"          {kind:28s} {block['n']:4d}  {recalls}")
    wrong = report["disagreements"]
    lines += ["", f"disagreements: {len(wrong)} (showing {min(show, len(wrong))})"]
    if wrong and show:
        lines.append(f"  {'id':10s} {'split':5s} {'kind':26s} {'label':7s} {'judge':7s} response")
        for row in wrong[:show]:
            lines.append(
                f"  {row['id'][:10]:10s} {row['split'][:5]:5s} {row['kind'][:26]:26s} "
                f"{row['label']:7s} {row['predicted']:7s} {_clip(row['response'], 70)}"
            )
    return "\n".join(lines) + "\n"
