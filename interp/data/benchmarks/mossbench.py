"""MOSSBench (benign requests on harmless images that look harmful: over-refusal).

Layout (the MOSSBench repository)::

    PATH/data/images_information/information.json   {pid: {image: "images/<n>.png", question,
                                                           metadata: {over, human, child, ...}}}
    PATH/data/images/<n>.png                          (.webp/.jpg copies are accepted)

``PATH`` may also be the ``data`` folder. The category is the over-sensitivity type
(``metadata.over``: type 1 exaggerated risk, type 2 negated harm, type 3 counterintuitive).
"""

from __future__ import annotations

import os

from interp.data.benchmarks.common import Layout
from interp.data.records import BENCHMARKS, BenchmarkItem

NAME = "mossbench"
LAYOUT = Layout(NAME, "data/images_information/information.json and data/images/")


@BENCHMARKS.register(NAME)
def mossbench(path: str | os.PathLike | None = None) -> list[BenchmarkItem]:
    """MOSSBench: 300 benign image + question pairs; the metric is the refusal rate."""
    root = LAYOUT.root(path)
    info_path = LAYOUT.find(
        root, ["data/images_information/information.json", "images_information/information.json"]
    )
    data_dir = info_path.parent.parent
    info = LAYOUT.read_object(info_path, "pid")
    items: list[BenchmarkItem] = []
    for pid, record in info.items():
        LAYOUT.require_fields(record, ["image", "question"], f"{info_path} pid {pid}")
        image = LAYOUT.image(data_dir / str(record["image"]), f" (pid {pid})")
        metadata = record.get("metadata") or {}
        items.append(
            BenchmarkItem(
                benchmark=NAME,
                id=str(record.get("pid", pid)),
                category=str(metadata.get("over", "unknown")).replace(" ", "_"),
                image_path=str(image),
                prompt=str(record["question"]),
                kind="benign",
                meta={k: metadata.get(k) for k in ("human", "child", "syn", "ocr", "harm")},
            )
        )
    return LAYOUT.done(items, root)
