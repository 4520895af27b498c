"""Where a big model's weights go: ``--device-map`` and ``--max-memory`` parsed and checked.

Light on purpose (no torch): the stage configs check these options at start-up, before any model
loads. :func:`interp.models.load_vlm` hands the parsed values to ``transformers``'
``from_pretrained(device_map=..., max_memory=...)`` (accelerate places the modules and moves
each forward's tensors between devices; modules placed on ``disk`` are read from the weights file
when they run).

``--device-map`` takes:

* a strategy: ``auto``, ``balanced``, ``balanced_low_0`` or ``sequential`` (accelerate fills the
  GPUs, then the CPU, then the disk, within ``--max-memory``);
* one device: ``cpu``, ``cuda``, ``cuda:N`` or ``N`` (the whole model there, through the same
  dispatch path);
* an explicit map ``MODULE=DEVICE,MODULE=DEVICE,...`` (devices: ``cpu``, ``disk``, ``cuda:N``,
  ``N``), or a ``.json`` file holding such an object.

``--max-memory`` is ``DEVICE=SIZE,...`` with devices ``cpu``, ``N`` / ``cuda:N`` (a GPU) or
``mps``, and sizes such as ``200MB``, ``20GiB`` or a number of bytes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from interp.errors import VSFAError

STRATEGIES: tuple[str, ...] = ("auto", "balanced", "balanced_low_0", "sequential")
"""The device-map strategies of accelerate / transformers."""

DeviceMap = str | dict[str, str | int]
MaxMemory = dict[str | int, int]

MAP_HELP = (
    "auto, balanced, balanced_low_0, sequential, a device (cpu, cuda:N), MODULE=DEVICE,... or "
    "a .json file of {module: device}"
)
_GPU = re.compile(r"^(?:cuda:)?(\d+)$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1}
_UNITS.update({f"{p}B": 1000 ** (n + 1) for n, p in enumerate("KMGT")})
_UNITS.update({f"{p}IB": 1024 ** (n + 1) for n, p in enumerate("KMGT")})


def _device(text: str, option: str, where: str) -> str | int:
    """``cpu``/``disk``/``mps``/``cuda`` as given, a GPU index as an int; an error otherwise."""
    value = text.strip()
    gpu = _GPU.match(value)
    if gpu:
        return int(gpu.group(1))
    if value in ("cpu", "disk", "mps", "cuda"):
        return value
    raise VSFAError(f"{option}: {where} has device {text!r}; expected cpu, disk, cuda, cuda:N or N")


def _pairs(text: str, option: str, example: str) -> list[tuple[str, str]]:
    pairs = []
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise VSFAError(
                f"{option}: {part.strip()!r} is not KEY=VALUE (expected e.g. {example})"
            )
        pairs.append((key.strip(), value.strip()))
    return pairs


def _map_file(path: Path, option: str) -> dict[str, str | int]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise VSFAError(f"{option} {path}: not a readable JSON file ({error})") from None
    if not isinstance(data, dict) or not data:
        raise VSFAError(f"{option} {path}: expected a JSON object {{module: device}}")
    return {
        str(key): value if isinstance(value, int) else str(value) for key, value in data.items()
    }


def parse_device_map(value: DeviceMap | None, option: str = "--device-map") -> DeviceMap | None:
    """The device map ``value`` asks for (see the module's text), ``None`` for none.

    A single device becomes ``{"": device}``; an explicit map ``{module: device}`` with GPU
    indices as ints. Anything else is a one-line :class:`~interp.errors.VSFAError`.
    """
    if value is None or (isinstance(value, str) and value.strip() in ("", "none")):
        return None
    if isinstance(value, dict):
        entries = list(value.items())
    else:
        text = value.strip()
        if text in STRATEGIES:
            return text
        if text.endswith(".json"):
            entries = list(_map_file(Path(text), option).items())
        elif "=" in text:
            entries = _pairs(text, option, "model.language_model=cpu,lm_head=disk")
        else:
            try:
                return {"": _device(text, option, "the map")}
            except VSFAError:
                raise VSFAError(f"{option} {text!r}: expected {MAP_HELP}") from None
    if not entries:
        raise VSFAError(f"{option}: the map is empty; expected {MAP_HELP}")
    return {
        str(key): value if isinstance(value, int) else _device(str(value), option, f"{key!r}")
        for key, value in entries
    }


def parse_size(text: str | int, option: str = "--max-memory") -> int:
    """``"200MB"`` -> 200_000_000, ``"20GiB"`` -> 20 * 2**30, ``"512"`` -> 512 bytes."""
    if isinstance(text, int) and text > 0:
        return text
    match = _SIZE.match(str(text).strip())
    if not match or float(match.group(1)) <= 0:
        raise VSFAError(
            f"{option}: size {text!r} is not a positive size (expected e.g. 200MB, 20GiB or bytes)"
        )
    unit = (match.group(2) or "").upper()
    return int(float(match.group(1)) * _UNITS[unit])


def parse_max_memory(value: str | dict | None, option: str = "--max-memory") -> MaxMemory | None:
    """``"cpu=200MB,0=20GiB"`` -> ``{"cpu": 200000000, 0: 21474836480}`` (``None``: no cap)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    pairs = list(value.items()) if isinstance(value, dict) else _pairs(value, option, "cpu=200MB")
    limits: MaxMemory = {}
    for key, size in pairs:
        device = _device(str(key), option, f"{str(key)!r}")
        if device in ("disk", "cuda"):
            raise VSFAError(
                f"{option}: {key!r} cannot be capped; give cpu, mps or a GPU as N or cuda:N"
            )
        limits[device] = parse_size(size, option)
    return limits


def check_placement(device_map: DeviceMap | None, max_memory: str | dict | None) -> None:
    """Both options parse, and ``--max-memory`` comes with a strategy that reads it."""
    placed = parse_device_map(device_map)
    limits = parse_max_memory(max_memory)
    if limits is not None and not isinstance(placed, str):
        raise VSFAError(
            "--max-memory caps what --device-map auto (balanced, sequential) places on each "
            "device; give it with one of those strategies"
        )
