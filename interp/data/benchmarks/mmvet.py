"""MM-Vet (benign, general capability), graded offline by normalised answer matching.

Layout::

    PATH/mm-vet.json   {"v1_0": {imagename, question, answer, capability: [...]}, ...}
    PATH/images/<imagename>

The official MM-Vet grade comes from an LLM grader; here ``reference`` carries the answer and
judges mark a response correct by :func:`interp.eval.matching.match_answer` (an offline
substitute, labelled as such in the metrics).
"""

from __future__ import annotations

import os

from interp.data.benchmarks.common import Layout
from interp.data.records import BENCHMARKS, BenchmarkItem

NAME = "mmvet"
LAYOUT = Layout(NAME, "mm-vet.json and images/")


@BENCHMARKS.register(NAME)
def mmvet(path: str | os.PathLike | None = None) -> list[BenchmarkItem]:
    """MM-Vet questions with reference answers; category = the capability integration."""
    root = LAYOUT.root(path)
    json_path = LAYOUT.find(root, ["mm-vet.json", "mm-vet/mm-vet.json"])
    image_dir = LAYOUT.find(json_path.parent, ["images"], "the images/ folder")
    data = LAYOUT.read_object(json_path, "question id (v1_0 ...)")
    items: list[BenchmarkItem] = []
    for qid, record in data.items():
        LAYOUT.require_fields(record, ["imagename", "question", "answer"], f"{json_path} {qid}")
        image = LAYOUT.image(image_dir / str(record["imagename"]), f" ({qid})")
        capability = record.get("capability") or []
        items.append(
            BenchmarkItem(
                benchmark=NAME,
                id=str(qid),
                category="+".join(sorted(capability)) or "unknown",
                image_path=str(image),
                prompt=str(record["question"]),
                kind="benign",
                reference=str(record["answer"]),
                meta={"capability": list(capability), "grading": "normalised-match (offline)"},
            )
        )
    return LAYOUT.done(items, root)
