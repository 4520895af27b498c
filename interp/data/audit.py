"""Label-free audit of a VSFA VQA set.

VSFA's claim rests on the fine-tuning data carrying no safety signal: no refusals, no safety
instructions, no safety labels. The audit scans every record's question and answer for the
phrases of a configurable lexicon (whole-word, case-insensitive), and by default drops flagged
records and reports what it dropped; strict mode turns any flag into an error.

A lexicon is a mapping ``category -> phrases``. Files are JSON (``{"category": [phrases]}``) or
plain text (one phrase per line, ``#`` comments, all in category ``custom``).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from interp.artifacts import write_json_atomic
from interp.data.jsonl import read_vqa_jsonl, write_jsonl
from interp.errors import VSFAError

Lexicon = Mapping[str, Sequence[str]]

DEFAULT_LEXICON: dict[str, tuple[str, ...]] = {
    # The usual refusal markers (GCG / VLGuard keyword lists).
    "refusal": (
        "i'm sorry",
        "i am sorry",
        "sorry, but",
        "i apologize",
        "i cannot",
        "i can't",
        "i can not",
        "i am unable",
        "i'm unable",
        "i won't",
        "i will not",
        "i must decline",
        "i refuse",
        "as an ai",
        "as a language model",
        "not able to help",
        "not able to provide",
        "cannot assist",
        "can't assist",
        "cannot help",
        "can't help with",
    ),
    # Advice and instructions about safety.
    "safety_instruction": (
        "be careful",
        "stay safe",
        "keep away",
        "do not touch",
        "don't touch",
        "seek help",
        "call the police",
        "emergency services",
        "please consult",
        "responsibly",
        "precaution",
        "precautions",
        "handle with care",
        "never use",
    ),
    # Safety labels and value-laden words.
    "safety_label": (
        "safe",
        "unsafe",
        "safety",
        "harmful",
        "harm",
        "dangerous",
        "danger",
        "hazard",
        "hazardous",
        "caution",
        "warning",
        "illegal",
        "unethical",
        "threat",
        "threatening",
        "risky",
        "inappropriate",
        "offensive",
        "violent",
        "violence",
    ),
}

AUDITED_FIELDS = ("question", "answer")


@dataclass
class AuditReport:
    """What the audit found: counts per category and term, and examples of flagged records."""

    total: int
    kept: int
    flagged: int
    by_category: dict[str, int] = field(default_factory=dict)
    by_term: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    lexicon: dict[str, list[str]] = field(default_factory=dict)
    dropped: bool = True
    flagged_ids: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.flagged == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if self.clean:
            return f"audit: {self.total} records, none flagged"
        terms = ", ".join(f"{t!r} x{n}" for t, n in sorted(self.by_term.items(), key=_by_count))
        action = "dropped" if self.dropped else "flagged"
        return f"audit: {self.flagged} of {self.total} records {action} ({terms})"


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


class LexiconMatcher:
    """Whole-word, case-insensitive matching of every phrase of a lexicon."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.lexicon = {
            cat: [p.lower() for p in phrases if p.strip()] for cat, phrases in lexicon.items()
        }
        phrases = sorted({p for ps in self.lexicon.values() for p in ps}, key=len, reverse=True)
        if not phrases:
            raise VSFAError("the audit lexicon is empty; give at least one phrase")
        self.category_of = {p: cat for cat, ps in self.lexicon.items() for p in ps}
        # Typographic apostrophes count as plain ones; \b keeps "harm" from matching "pharmacy".
        alternatives = "|".join(re.escape(p).replace("'", "['\u2019]") for p in phrases)
        self.pattern = re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)

    def find(self, text: str) -> list[str]:
        return [m.group(0).lower().replace("\u2019", "'") for m in self.pattern.finditer(text)]


def audit_records(
    records: Iterable[Mapping[str, Any]],
    lexicon: Lexicon = DEFAULT_LEXICON,
    *,
    max_examples: int = 20,
) -> tuple[list[dict[str, Any]], AuditReport]:
    """Split ``records`` into the clean ones and a report of the flagged ones.

    Returns ``(kept_records, report)``; the caller decides whether to drop (use ``kept_records``)
    or fail (``report.clean`` is False).
    """
    matcher = LexiconMatcher(lexicon)
    kept: list[dict[str, Any]] = []
    by_category: Counter[str] = Counter()
    by_term: Counter[str] = Counter()
    examples: list[dict[str, Any]] = []
    flagged_ids: list[str] = []
    total = 0
    for record in records:
        total += 1
        hits: dict[str, list[str]] = {}
        for name in AUDITED_FIELDS:
            found = matcher.find(str(record.get(name, "")))
            if found:
                hits[name] = found
        if not hits:
            kept.append(dict(record))
            continue
        terms = sorted({t for found in hits.values() for t in found})
        by_term.update(terms)
        by_category.update({matcher.category_of.get(t, "custom") for t in terms})
        flagged_ids.append(str(record.get("id", total - 1)))
        if len(examples) < max_examples:
            examples.append(
                {
                    "id": record.get("id"),
                    "terms": terms,
                    **{name: record.get(name) for name in AUDITED_FIELDS},
                }
            )
    report = AuditReport(
        total=total,
        kept=len(kept),
        flagged=total - len(kept),
        by_category=dict(by_category),
        by_term=dict(by_term),
        examples=examples,
        lexicon={cat: list(ps) for cat, ps in matcher.lexicon.items()},
        flagged_ids=flagged_ids,
    )
    return kept, report


def load_lexicon(path: str | os.PathLike | None) -> dict[str, tuple[str, ...]]:
    """The default lexicon, or one read from a JSON or text file."""
    if path is None:
        return dict(DEFAULT_LEXICON)
    path = Path(path)
    if not path.is_file():
        raise VSFAError(f"lexicon file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise VSFAError(f"lexicon {path} is not valid JSON: {error}") from None
        if not isinstance(data, dict) or not all(
            isinstance(v, list) and all(isinstance(p, str) for p in v) for v in data.values()
        ):
            raise VSFAError(f"lexicon {path}: expected a JSON object of category -> [phrases]")
        return {str(k): tuple(v) for k, v in data.items()}
    lines = [line.strip() for line in text.splitlines()]
    return {"custom": tuple(line for line in lines if line and not line.startswith("#"))}


def audit_report_path(dataset: str | os.PathLike) -> Path:
    """Where the audit report of ``dataset`` (a JSONL file) is saved: beside it."""
    dataset = Path(dataset)
    return dataset.with_name(f"{dataset.stem}.audit.json")


def audit_file(
    path: str | os.PathLike,
    *,
    lexicon: Lexicon = DEFAULT_LEXICON,
    strict: bool = False,
    drop: bool = True,
) -> AuditReport:
    """Audit a VQA JSONL in place: drop flagged records (rewriting the file) or fail if strict.

    The report is written beside the dataset (``<stem>.audit.json``) in every case, so a strict
    failure still leaves the evidence.
    """
    path = Path(path)
    records = read_vqa_jsonl(path)
    kept, report = audit_records(records, lexicon)
    report.dropped = drop and not strict
    write_json_atomic(audit_report_path(path), report.to_dict())
    if strict and not report.clean:
        raise VSFAError(
            f"{path}: {report.summary()}; the VSFA set must be label-free "
            f"(report: {audit_report_path(path)})"
        )
    if report.dropped and not report.clean:
        write_jsonl(path, kept)
    return report
