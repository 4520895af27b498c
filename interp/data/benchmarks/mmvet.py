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

from interp.data.benchmarks.common import (
    check_not_empty,
    find_first,
    read_json_file,
    require_fields,
    require_path,
    resolve_image,
)
from interp.data.records import BenchmarkItem, register_benchmark
from interp.errors import VSFAError

NAME = "mmvet"
LAYOUT = "mm-vet.json and images/"


@register_benchmark(NAME)
def mmvet(path: str | os.PathLike | None = None) -> list[BenchmarkItem]:
    """MM-Vet questions with reference answers; category = the capability integration."""
    root = require_path(path, NAME, LAYOUT)
    json_path = find_first(root, ["mm-vet.json", "mm-vet/mm-vet.json"], NAME, LAYOUT)
    image_dir = find_first(json_path.parent, ["images"], NAME, "the images/ folder")
    data = read_json_file(json_path, NAME)
    if not isinstance(data, dict):
        raise VSFAError(f"{NAME}: {json_path} should be an object keyed by question id (v1_0 ...)")
    items: list[BenchmarkItem] = []
    for qid, record in data.items():
        require_fields(record, ["imagename", "question", "answer"], f"{NAME}: {json_path} {qid}")
        image = resolve_image(image_dir / str(record["imagename"]))
        if image is None:
            raise VSFAError(
                f"{NAME}: image {image_dir / str(record['imagename'])} ({qid}) is missing"
            )
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
    check_not_empty(items, NAME, root)
    return items
