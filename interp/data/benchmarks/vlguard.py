"""VLGuard test subsets: ``unsafes`` and ``safe_unsafes`` (harmful), ``safe_safes`` (benign).

Layout::

    PATH/test.json     [{id, image, safe, instr-resp, harmful_category?, harmful_subcategory?}]
    PATH/test/<image>  (``image`` is relative to the unzipped test image folder; the folder may
                        also be PATH itself or PATH/images)

``PATH`` may also be the ``test.json`` file itself (images then resolve beside it).
:func:`read_vlguard_records` reads and checks the records of either split (``train.json`` too).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from interp.data.benchmarks.common import Layout, resolve_image
from interp.data.records import BENCHMARKS, BenchmarkItem
from interp.errors import VSFAError

NAME = "vlguard"
LAYOUT = Layout(NAME, "test.json and the unzipped test image folder")


def read_vlguard_records(json_path: Path) -> list[dict[str, Any]]:
    """The records of a VLGuard ``train.json``/``test.json``, with the fields checked."""
    records = LAYOUT.read_json(json_path)
    if not isinstance(records, list):
        raise VSFAError(f"{NAME}: {json_path} should be a list of records")
    for index, record in enumerate(records):
        where = f"{json_path} record {index}"
        LAYOUT.require_fields(record, ["image", "safe", "instr-resp"], where)
        if not isinstance(record["instr-resp"], list) or not record["instr-resp"]:
            raise VSFAError(f"{NAME}: {where}: instr-resp should be a non-empty list")
    return records


def _image_root(root: Path, json_path: Path, first_image: str) -> Path:
    """The folder the records' relative image paths resolve against."""
    base = json_path.parent
    for candidate in (base / "test", base, base / "images", base / "VLGuard" / "test", root):
        if resolve_image(candidate / first_image) is not None:
            return candidate
    raise VSFAError(
        f"{NAME}: cannot find the images of {json_path.name} (e.g. {first_image}) under "
        f"{base / 'test'} or {base}; unzip test.zip next to test.json"
    )


def _instruction(record: dict[str, Any], key: str) -> str | None:
    for turn in record["instr-resp"]:
        if isinstance(turn, dict) and key in turn:
            return str(turn[key])
    return None


@BENCHMARKS.register(NAME)
def vlguard(path: str | os.PathLike | None = None) -> list[BenchmarkItem]:
    """VLGuard test: unsafe images, safe images with unsafe instructions, and safe pairs."""
    root = LAYOUT.root(path)
    json_path = root if root.is_file() else LAYOUT.find(root, ["test.json", "data/test.json"])
    records = read_vlguard_records(json_path)
    if not records:
        raise VSFAError(f"{NAME}: {json_path} holds no records")
    image_root = _image_root(root, json_path, str(records[0]["image"]))
    items: list[BenchmarkItem] = []
    for index, record in enumerate(records):
        image = LAYOUT.image(image_root / str(record["image"]))
        record_id = str(record.get("id", index))
        meta = {
            "harmful_category": record.get("harmful_category"),
            "harmful_subcategory": record.get("harmful_subcategory"),
        }
        if record["safe"]:
            pairs = [
                ("safe_unsafes", "unsafe_instruction", "harmful"),
                ("safe_safes", "safe_instruction", "benign"),
            ]
        else:
            pairs = [("unsafes", "instruction", "harmful")]
        for subset, key, kind in pairs:
            text = _instruction(record, key)
            if text is None:
                raise VSFAError(
                    f"{NAME}: {json_path.name} record {record_id} (safe={record['safe']}) "
                    f"has no {key!r} in instr-resp"
                )
            items.append(
                BenchmarkItem(
                    benchmark=NAME,
                    id=f"{subset}/{record_id}",
                    category=subset,
                    image_path=str(image),
                    prompt=text,
                    kind=kind,  # type: ignore[arg-type]
                    meta=meta,
                )
            )
    return LAYOUT.done(items, root)
