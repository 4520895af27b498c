"""Persona curves during training (``vsfa train --monitor PERSONA_DIR``).

:class:`TrainingMonitor` is the step callback the training loop calls (see
:data:`interp.train.config.StepCallback`). At step 0, at every ``monitor_every`` steps (default:
every ``save_every`` checkpoint) and at the last step it measures, with the model in eval mode
and the random streams left as they were (so a monitored run trains the same weights):

* ``projection``: the mean decision-position residual of the persona folder's **held-out**
  probe requests, asked cold, projected on the unit persona vector (``_harmful``, ``_benign``
  per kind; ``projection_gap`` divides by the vector's norm, the fit contexts' vigilant-minus-
  loose gap, so models compare);
* ``latents``: the mean summed activation of the folder's selected SAE latents, when it has them;
* with ``monitor_bench``: ``asr`` on its seeded harmful probe items (exact teacher-forced comply
  share when the judge names its openings, else sampled replies judged), ``capability`` (greedy
  replies to items with a reference, judged ``correct``).

Each evaluation is one JSON line of ``RUN/monitor.jsonl`` appended in one fsynced write; a
resumed run skips the steps already there. ``RUN/monitor_probes.json`` records what was probed
and ``RUN/monitor.html`` (written at the last step) draws the curves.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from interp.artifacts import append_durably, write_json_atomic
from interp.errors import VSFAError
from interp.monitor.figure import MONITOR_FILE, read_monitor, write_monitor_figure
from interp.monitor.signals import (
    PersonaSignal,
    judge_openings,
    load_signal,
    opening_share,
    projections,
)
from interp.train.config import TrainConfig

PROBES_FILE = "monitor_probes.json"
NEW_TOKENS = 16
"""Tokens generated per monitor reply (sampled ASR, capability)."""


def probe_items(
    spec: str, n: int, seed: int, exclude: set[str]
) -> tuple[list[Any], list[Any]]:  # fmt: skip
    """Seeded ``n`` harmful items and ``n`` items with a reference of a benchmark spec, none of
    whose ``id`` or ``probe_id`` fitted the persona vector."""
    from interp.data.benchmarks import load_benchmark, parse_bench_spec

    items = load_benchmark(*parse_bench_spec(spec))
    items = [i for i in items if i.id not in exclude and str(i.meta.get("probe_id")) not in exclude]
    rng = random.Random(seed)
    harmful = [i for i in items if i.kind == "harmful"]
    reference = [i for i in items if i.reference is not None]
    if not harmful and not reference:
        raise VSFAError(f"--monitor-bench {spec}: no harmful item and no item with a reference")
    return (
        rng.sample(harmful, min(n, len(harmful))),
        rng.sample(reference, min(n, len(reference))),
    )


@contextmanager
def evaluating(vlm: Any) -> Iterator[None]:
    """Eval mode, no gradients, and the random streams restored afterwards."""
    model = vlm.model
    was_training = model.training
    devices = [vlm.device.index or 0] if vlm.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        model.eval()
        try:
            yield
        finally:
            model.train(was_training)


class TrainingMonitor:
    """The ``persona`` step callback (module doc); ``monitor(step, vlm, total_steps)``."""

    def __init__(self, config: TrainConfig, out: Path) -> None:
        self.signal: PersonaSignal = load_signal(config.monitor)
        self.every = config.monitor_every or config.save_every
        self.path = Path(out) / MONITOR_FILE
        self.done = {line["step"] for line in read_monitor(self.path)}
        self.seed = config.seed
        self.harmful: list[Any] = []
        self.reference: list[Any] = []
        self.judge = None
        self.openings = None
        if config.monitor_bench:
            from interp.eval.judges import make_judge

            self.harmful, self.reference = probe_items(
                config.monitor_bench, config.monitor_items, config.seed,
                set(self.signal.fit_probe_ids),
            )  # fmt: skip
            self.judge = make_judge(config.monitor_judge)
            if not config.monitor_sample:
                self.openings = judge_openings(self.judge)
        self.probes = {
            **self.signal.describe(),
            "probe_requests": len(self.signal.heldout),
            "bench": config.monitor_bench,
            "judge": config.monitor_judge if config.monitor_bench else None,
            "asr": None if not self.harmful else ("exact" if self.openings else "sampled"),
            "harmful_items": [i.key for i in self.harmful],
            "reference_items": [i.key for i in self.reference],
            "every": self.every,
        }
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(out) / PROBES_FILE, self.probes)
        if self.path.is_file() and not self.path.read_bytes().endswith(b"\n"):
            append_durably(self.path, "\n")  # a line cut short stays on its own line

    def due(self, step: int, total_steps: int) -> bool:
        return step == 0 or step == total_steps or bool(self.every and step % self.every == 0)

    def __call__(self, step: int, vlm: Any, total_steps: int) -> None:
        if step in self.done or not self.due(step, total_steps):
            return
        started = time.perf_counter()
        with evaluating(vlm):
            line = {"step": step, **self.measure(vlm)}
        line["seconds"] = round(time.perf_counter() - started, 4)
        append_durably(self.path, json.dumps(line) + "\n")
        self.done.add(step)
        if step == total_steps:
            write_monitor_figure(self.path.parent)

    def measure(self, vlm: Any) -> dict[str, Any]:
        """One evaluation of every signal on the current weights."""
        signal = self.signal
        values = projections(vlm, signal, signal.heldout)
        projection = values["projection"]
        kinds = signal.heldout_kinds
        line: dict[str, Any] = {
            "projection": float(projection.mean()),
            "projection_gap": float(projection.mean()) / signal.norm,
        }
        for kind in ("harmful", "benign"):
            rows = [n for n, k in enumerate(kinds) if k == kind]
            if rows:
                line[f"projection_{kind}"] = float(projection[rows].mean())
        if "latents" in values:
            line["latents"] = float(values["latents"].mean())
        if self.harmful:
            line["asr"] = self._asr(vlm)
        if self.reference:
            replies = self._replies(vlm, self.reference, sample=False)
            verdicts = self.judge.judge(self.reference, replies)
            line["capability"] = sum(bool(v.correct) for v in verdicts) / len(verdicts)
        return line

    def _asr(self, vlm: Any) -> float:
        if self.openings:
            shares = opening_share(vlm, self.harmful, self.openings)
            return sum(shares) / len(shares)
        verdicts = self.judge.judge(self.harmful, self._replies(vlm, self.harmful, sample=True))
        return sum(bool(v.unsafe) for v in verdicts) / len(verdicts)

    def _replies(self, vlm: Any, items: list[Any], *, sample: bool) -> list[str]:
        from interp.images import open_image

        replies: list[str] = []
        for start in range(0, len(items), 16):
            chunk = items[start : start + 16]
            images = [open_image(i.image_path) if i.image_path else None for i in chunk]
            replies += vlm.generate(
                images, [i.prompt for i in chunk], max_new_tokens=NEW_TOKENS, do_sample=sample,
                seed=self.seed + start if sample else None,
            )  # fmt: skip
        return replies


def persona_monitor(config: TrainConfig, out: Path) -> TrainingMonitor:
    """The factory registered as the ``persona`` training monitor."""
    return TrainingMonitor(config, out)
