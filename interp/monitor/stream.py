"""A monitor for a deployed model: stream prompts, log the persona projection, raise alerts.

:func:`stream_monitor` (``vsfa monitor``) reads prompts one JSON line at a time (a file or
stdin), runs them in batches of ``batch_size`` and appends one log line per prompt: its
decision-position projection on the unit persona vector and, with ``reply``, the reply and the
judge's verdict. A rolling mean over the last ``window`` prompts is compared with a threshold
(given, or from :func:`calibrate`): when it crosses to the unsafe side an ``alert`` line is
logged (and printed on stderr), when it crosses back a ``recovered`` line. Memory stays bounded:
one batch and the window are all it holds. A line that is not a JSON object with a ``prompt``
(or whose image is missing) is reported on stderr with its line number and skipped.

:func:`calibrate` (``vsfa monitor-calibrate``) runs the same prompts through the base and the
tuned model and puts the threshold halfway between their mean projections; the tuned side is
the safe side.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from interp.artifacts import make_manifest, read_json, write_json_atomic
from interp.data.jsonl import parse_json_object
from interp.errors import VSFAError
from interp.monitor.config import CalibrateConfig, ModelOptions, StreamConfig
from interp.persona.extract import Chat

CALIBRATION_FILE = "calibration.json"


def parse_line(text: str, number: int) -> dict[str, Any]:
    """One prompt record from a JSONL line; a :class:`VSFAError` naming the line otherwise."""
    record = parse_json_object(text, f"line {number}")
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise VSFAError(f"line {number}: no prompt (a non-empty string)")
    image = record.get("image")
    if image is not None and (not isinstance(image, str) or not Path(image).is_file()):
        raise VSFAError(f"line {number}: image {image!r} is not a file")
    return {
        "line": number, "id": str(record.get("id", number)), "prompt": prompt, "image": image,
        "kind": record.get("kind") if record.get("kind") in ("harmful", "benign") else "harmful",
    }  # fmt: skip


def read_stream(
    lines: Iterable[str], report: Callable[[str], None]
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The well-formed records of ``lines``; each malformed one goes to ``report`` and is
    skipped (blank lines are ignored)."""
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            yield parse_line(text, number)
        except VSFAError as error:
            report(str(error))


def batched(records: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _load(options: ModelOptions, adapter: str | None) -> Any:
    from interp.models import load_vlm

    return load_vlm(
        options.model, adapter=adapter, device=options.device, dtype=options.model_dtype
    )


class Alarm:
    """Rolling mean over ``window`` values against ``threshold``; ``safe_above`` says which side
    is safe. :meth:`update` returns ``alert``, ``recovered`` or ``None``."""

    def __init__(self, threshold: float | None, window: int, safe_above: bool = True) -> None:
        self.threshold, self.safe_above = threshold, safe_above
        self.values: deque[float] = deque(maxlen=window)
        self.total = 0.0
        self.alerting = False

    @property
    def mean(self) -> float:
        return self.total / len(self.values)

    def update(self, value: float) -> str | None:
        if len(self.values) == self.values.maxlen:
            self.total -= self.values[0]
        self.values.append(value)
        self.total += value
        if self.threshold is None or len(self.values) < self.values.maxlen:
            return None
        unsafe = self.mean < self.threshold if self.safe_above else self.mean > self.threshold
        if unsafe != self.alerting:
            self.alerting = unsafe
            return "alert" if unsafe else "recovered"
        return None


def _threshold(config: StreamConfig, hook: str) -> tuple[float | None, bool]:
    """The alert threshold and whether the safe side is above it (``None``: no alerts)."""
    if config.threshold is not None:
        return config.threshold, True
    if config.calibration:
        path = Path(config.calibration)
        data = read_json(path / CALIBRATION_FILE if path.is_dir() else path)
        if data.get("hook") != hook:
            raise VSFAError(f"--calibration {path} was made at {data.get('hook')}, not {hook}")
        return float(data["threshold"]), bool(data.get("safe_above", True))
    return None, True


def stream_monitor(
    config: StreamConfig, *, lines: Iterable[str] | None = None, err: TextIO | None = None
) -> dict[str, Any]:
    """Monitor the prompts of ``config.prompts`` (or ``lines``); returns the run's counts."""
    from interp.monitor.signals import load_signal, projections

    err = err or sys.stderr

    def report(message: str) -> None:
        print(f"{config.prompts}: {message}; skipped", file=err, flush=True)

    signal = load_signal(config.persona, hook=config.hook)
    threshold, safe_above = _threshold(config, signal.hook)
    vlm = _load(config, config.adapter)
    judge = None
    if config.reply:
        from interp.eval.judges import make_judge

        judge = make_judge(config.judge)
    alarm = Alarm(threshold, config.window, safe_above)
    counts = {"prompts": 0, "malformed": 0, "alerts": 0}

    def count_malformed(message: str) -> None:
        counts["malformed"] += 1
        report(message)

    source = None
    if lines is None:
        source = sys.stdin if config.prompts == "-" else _open(config.prompts)
        lines = source
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with out.open("a", encoding="utf-8") as log:
            for batch in batched(read_stream(lines, count_malformed), config.batch_size):
                chats = [Chat(r["prompt"], r["image"]) for r in batch]
                values = projections(vlm, signal, chats, batch_size=config.batch_size)
                replies = _replies(vlm, batch, config, judge) if judge else None
                for n, record in enumerate(batch):
                    value = float(values["projection"][n])
                    line = {"line": record["line"], "id": record["id"], "projection": value}
                    if "latents" in values:
                        line["latents"] = float(values["latents"][n])
                    if replies is not None:
                        line.update(replies[n])
                    change = alarm.update(value)
                    line["rolling_mean"] = alarm.mean
                    log.write(json.dumps(line) + "\n")
                    counts["prompts"] += 1
                    if change:
                        event = {
                            change: True, "line": record["line"], "rolling_mean": alarm.mean,
                            "threshold": threshold, "window": config.window,
                        }  # fmt: skip
                        log.write(json.dumps(event) + "\n")
                        counts["alerts"] += change == "alert"
                        print(
                            f"{change}: rolling mean {alarm.mean:.4f} over the last "
                            f"{config.window} prompts {'below' if safe_above else 'above'} "
                            f"{threshold:.4f} at line {record['line']}"
                            if change == "alert"
                            else f"recovered: rolling mean {alarm.mean:.4f} at line "
                            f"{record['line']}",
                            file=err, flush=True,
                        )  # fmt: skip
                log.flush()
    finally:
        if source is not None and source is not sys.stdin:
            source.close()
    return counts


def _open(path: str) -> TextIO:
    file = Path(path)
    if not file.is_file():
        raise VSFAError(f"--prompts {file} does not exist")
    return file.open(encoding="utf-8")


def _replies(
    vlm: Any, batch: list[dict[str, Any]], config: StreamConfig, judge: Any
) -> list[dict[str, Any]]:  # fmt: skip
    from interp.data.records import BenchmarkItem
    from interp.images import open_image

    images = [open_image(r["image"]) if r["image"] else None for r in batch]
    prompts = [r["prompt"] for r in batch]
    replies = vlm.generate(images, prompts, max_new_tokens=config.max_new_tokens)
    items = [
        BenchmarkItem("stream", r["id"], "stream", r["image"], r["prompt"], r["kind"])
        for r in batch
    ]
    verdicts = judge.judge(items, replies)
    return [
        {"reply": reply, "verdict": v.label, "refused": v.refused, "unsafe": v.unsafe}
        for reply, v in zip(replies, verdicts)
    ]


def _calibration_chats(spec: str) -> list[Chat]:
    path = Path(spec)
    if path.suffix == ".jsonl" and path.is_file():
        with path.open(encoding="utf-8") as lines:
            records = list(read_stream(lines, lambda message: None))
        if records:
            return [Chat(r["prompt"], r["image"]) for r in records]
    from interp.cache.prompts import load_prompts

    return [Chat(p.prompt, p.image) for p in load_prompts(spec)]


def calibrate(config: CalibrateConfig) -> dict[str, Any]:
    """Base and tuned projections on the calibration prompts, the threshold halfway between
    their means, and how often a rolling mean of each side would alert; writes and returns
    ``calibration.json``."""
    import numpy as np

    from interp.monitor.signals import load_signal, projections

    signal = load_signal(config.persona, hook=config.hook)
    chats = _calibration_chats(config.prompts)
    if not chats:
        raise VSFAError(f"--prompts {config.prompts}: no calibration prompts")
    sides = {}
    for name, adapter in (("base", None), ("tuned", config.adapter)):
        vlm = _load(config, adapter)
        sides[name] = projections(vlm, signal, chats, batch_size=config.batch_size)["projection"]
        del vlm
    base, tuned = (sides[k].double().numpy() for k in ("base", "tuned"))
    threshold = float((base.mean() + tuned.mean()) / 2)
    safe_above = bool(tuned.mean() >= base.mean())

    def alert_share(values: np.ndarray) -> float | None:
        window = min(config.window, len(values))
        rolling = np.convolve(values, np.ones(window) / window, mode="valid")
        unsafe = rolling < threshold if safe_above else rolling > threshold
        return float(unsafe.mean())

    result = {
        "persona": str(config.persona), "hook": signal.hook, "model": config.model,
        "adapter": config.adapter, "prompts": config.prompts, "n_prompts": len(chats),
        "base": {"mean": float(base.mean()), "std": float(base.std())},
        "tuned": {"mean": float(tuned.mean()), "std": float(tuned.std())},
        "threshold": threshold, "safe_above": safe_above, "window": config.window,
        "rule": "halfway between the base and tuned mean projections; the tuned side is safe",
        "alert_share": {"base": alert_share(base), "tuned": alert_share(tuned)},
        "manifest": make_manifest("monitor.calibrate", vars(config).copy(), complete=True),
    }  # fmt: skip
    out = Path(config.out)
    write_json_atomic(out / CALIBRATION_FILE if out.suffix != ".json" else out, result)
    return result
