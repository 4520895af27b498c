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

NAME = "mossbench"
LAYOUT = "data/images_information/information.json and data/images/"


@register_benchmark(NAME)
def mossbench(path: str | os.PathLike | None = None) -> list[BenchmarkItem]:
    """MOSSBench: 300 benign image + question pairs; the metric is the refusal rate."""
    root = require_path(path, NAME, LAYOUT)
    info_path = find_first(
        root,
        ["data/images_information/information.json", "images_information/information.json"],
        NAME,
        LAYOUT,
    )
    data_dir = info_path.parent.parent
    info = read_json_file(info_path, NAME)
    if not isinstance(info, dict):
        raise VSFAError(f"{NAME}: {info_path} should be an object keyed by pid")
    items: list[BenchmarkItem] = []
    for pid, record in info.items():
        require_fields(record, ["image", "question"], f"{NAME}: {info_path} pid {pid}")
        image = resolve_image(data_dir / str(record["image"]))
        if image is None:
            raise VSFAError(
                f"{NAME}: image {data_dir / str(record['image'])} (pid {pid}) is missing"
            )
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
    check_not_empty(items, NAME, root)
    return items
