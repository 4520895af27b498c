"""VQA records on disk: one JSON object per line, read with checks and written atomically.

A record is ``{id, image, question, answer, source?, style?, tags?, ...}``; ``image`` is absolute
or relative to the JSONL's folder (:func:`resolve_image`). The VQA builder, the label-free audit
and the trainer all read and write VQA data through this module.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from interp.artifacts import write_text_atomic
from interp.errors import VSFAError

REQUIRED_FIELDS = ("image", "question", "answer")
OPTIONAL_STR_FIELDS = ("id", "source", "style")


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> Path:
    """Write one JSON object per line, atomically."""
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    return write_text_atomic(path, "".join(line + "\n" for line in lines))


def read_vqa_jsonl(
    path: str | os.PathLike, *, required: Sequence[str] = REQUIRED_FIELDS
) -> list[dict[str, Any]]:
    """Read VQA records; an error names the line and field of the first bad record."""
    path = Path(path)
    if not path.is_file():
        raise VSFAError(f"VQA data {path} does not exist")
    records = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        record = parse_json_object(line, f"{path} line {number}")
        for name in required:
            value = record.get(name)
            if not isinstance(value, str) or not value.strip():
                problem = "missing" if name not in record else "empty or not a string"
                raise VSFAError(f"{path} line {number}: field {name!r} is {problem}")
        for name in OPTIONAL_STR_FIELDS:
            if name in record and not isinstance(record[name], str):
                raise VSFAError(f"{path} line {number}: field {name!r} must be a string")
        if "tags" in record and not (
            isinstance(record["tags"], list) and all(isinstance(t, str) for t in record["tags"])
        ):
            raise VSFAError(f"{path} line {number}: field 'tags' must be a list of strings")
        record.setdefault("id", f"{path.stem}-{number}")
        records.append(record)
    if not records:
        raise VSFAError(f"VQA data {path} has no records")
    return records


def parse_json_object(text: str, where: str) -> dict[str, Any]:
    """One JSONL line as a JSON object; otherwise a one-line :class:`VSFAError` that starts with
    ``where`` (the file and line). Every JSONL reader of the project parses its lines here."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise VSFAError(f"{where}: not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise VSFAError(f"{where}: expected a JSON object")
    return record


def read_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a UTF-8 text file; a file in another encoding is one clear error naming
    the line (a JSONL or TXT given as data, prompts or a benchmark)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise VSFAError(
            f"{path} line {line}: not UTF-8 text (byte 0x{data[error.start]:02x}); save the file "
            "as UTF-8"
        ) from None
    return list(io.StringIO(text, newline=None))  # as open() splits: \n, \r\n, \r only


def resolve_image(image: str, base: str | os.PathLike) -> Path:
    """An image path of a record: absolute, or relative to ``base`` (the JSONL's folder)."""
    path = Path(image)
    return path if path.is_absolute() else Path(base) / path
