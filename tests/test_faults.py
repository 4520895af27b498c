"""Faults: a run stopped at every write point resumes to the artifacts of an uninterrupted run.

A stop is injected at the N-th write point (every atomic rename and every append goes through
``interp.artifacts.on_write``) for N = 1 .. all of them; each stopped run is then run again
without the fault, and its final artifacts must equal those of a run that never stopped (bytes
for tensors and JSONL, JSON without timings), with no record written twice. Real SIGKILLs,
training and the CLI runs are in the slow part.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from interp import artifacts
from interp.data.records import BenchmarkItem
from interp.eval.generation import GenerationConfig
from interp.eval.run import evaluate

TIMING_KEYS = {"created", "timings", "seconds", "train_seconds", "wall_time_s", "versions"}


class Killed(BaseException):
    """A stop no ``except Exception`` catches, like a kill."""


@contextmanager
def stop_at(n: int | None) -> Iterator[dict[str, int]]:
    """Raise :class:`Killed` at the ``n``-th write point (``None``: only count them)."""
    seen = {"n": 0}

    def hook(kind: str, path: Path) -> None:
        seen["n"] += 1
        if seen["n"] == n:
            raise Killed(f"{kind} {path}")

    artifacts.on_write = hook
    try:
        yield seen
    finally:
        artifacts.on_write = None


def _without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def snapshot(folder: Path, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every file under ``folder``: JSON without timings and absolute paths, other files' bytes."""
    found: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if not path.is_file() or any(part in name for part in ignore):
            continue
        data = path.read_bytes().replace(str(folder).encode(), b"<out>")
        if path.suffix == ".json":
            found[name] = _without_timings(json.loads(data))
        else:
            found[name] = data
    return found


def check_every_stop(
    run: Callable[[Path], Any], tmp_path: Path, ignore: tuple[str, ...] = ()
) -> int:
    """Run once whole, then stopped at each write point and run again; returns the count."""
    whole = tmp_path / "whole"
    with stop_at(None) as seen:
        run(whole)
    expected = snapshot(whole, ignore)
    assert seen["n"] > 2
    for n in range(1, seen["n"] + 1):
        out = tmp_path / f"stop{n}"
        with pytest.raises(Killed), stop_at(n):
            run(out)
        run(out)
        got = snapshot(out, ignore)
        assert got.keys() == expected.keys(), n
        for name in expected:
            assert got[name] == expected[name], (n, name)
        assert not list(out.rglob(".*.tmp")), n
    return seen["n"]


# ---- eval -------------------------------------------------------------------------------------
def make_items(folder: Path) -> list[BenchmarkItem]:
    """Five benchmark items, four with a small image in ``folder`` and one text-only."""
    out = []
    for index in range(5):
        image = None
        if index != 2:
            image = folder / f"{index}.png"
            Image.new("RGB", (24, 24), (50 * index, 90, 160)).save(image)
        kind = "harmful" if index < 3 else "benign"
        path = image and str(image)
        out.append(BenchmarkItem("toy", str(index), f"c{index % 2}", path, f"q{index}", kind))
    return out


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> list[BenchmarkItem]:
    return make_items(tmp_path_factory.mktemp("fault-images"))


GREEDY = GenerationConfig(max_new_tokens=3, batch_size=2)
SAMPLED = GenerationConfig(
    max_new_tokens=3, batch_size=3, do_sample=True, samples_per_item=2, temperature=1.5, seed=7
)


@pytest.mark.parametrize("generation", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_eval_stopped_at_every_write_point_resumes_identically(
    tiny_vlm, items, tmp_path, generation
):
    vlm = tiny_vlm("llava")

    def run(out: Path) -> None:
        evaluate(vlm, items, out, judge="keyword", generation=generation, n_boot=50, quiet=True)

    points = check_every_stop(run, tmp_path)
    assert points >= 5  # meta, every batch's append, judged, metrics, manifest
    lines = (tmp_path / "stop3" / "generations.jsonl").read_text().splitlines()
    assert len(lines) == len(items) * generation.samples_per_item  # no record twice


def test_sampled_resume_after_a_torn_partial_batch_equals_a_whole_run(tiny_vlm, items, tmp_path):
    vlm = tiny_vlm("llava")
    whole = tmp_path / "whole"
    evaluate(vlm, items, whole, judge="keyword", generation=SAMPLED, n_boot=50, quiet=True)
    torn = tmp_path / "torn"
    torn.mkdir()
    shutil.copy(whole / "generations.meta.json", torn)
    lines = (whole / "generations.jsonl").read_text().splitlines(keepends=True)
    # 4 of the first batch's 3 items x 2 samples = 6 records made it, then half a line
    (torn / "generations.jsonl").write_text("".join(lines[:4]) + lines[4][:20])
    evaluate(vlm, items, torn, judge="keyword", generation=SAMPLED, n_boot=50, quiet=True)
    for name in ("generations.jsonl", "judged.jsonl"):
        assert (torn / name).read_bytes() == (whole / name).read_bytes()


def test_doubled_records_are_dropped_on_resume(tiny_vlm, items, tmp_path):
    vlm = tiny_vlm("llava")
    out = tmp_path / "eval"
    evaluate(vlm, items, out, judge="keyword", generation=GREEDY, n_boot=50, quiet=True)
    whole = (out / "generations.jsonl").read_bytes()
    lines = whole.decode().splitlines(keepends=True)
    (out / "generations.jsonl").write_text("".join(lines[:3] + lines[1:3] + lines[3:]))
    (out / "manifest.json").unlink()
    evaluate(vlm, items, out, judge="keyword", generation=GREEDY, n_boot=50, quiet=True)
    assert (out / "generations.jsonl").read_bytes() == whole
    judged = (out / "judged.jsonl").read_text().splitlines()
    assert len(judged) == len(items)


# ---- cache ------------------------------------------------------------------------------------
def test_cache_stopped_at_every_write_point_resumes_identically(tiny_vlm, items, tmp_path):
    from interp.cache.config import CacheConfig
    from interp.cache.prompts import CachePrompt
    from interp.cache.run import cache_activations_for

    vlm = tiny_vlm("llava")
    prompts = [
        CachePrompt(id=item.id, prompt=item.prompt, image=item.image_path, kind=item.kind)
        for item in items
    ]

    def run(out: Path) -> None:
        config = CacheConfig(
            model=vlm.name_or_path, prompts="inline", hooks=["blocks.0.hook_resid_post"],
            out=str(out), shard_rows=40, batch_size=2, device="cpu", quiet=True,
        )  # fmt: skip
        cache_activations_for(vlm, prompts, config)

    points = check_every_stop(run, tmp_path)
    manifest = json.loads((tmp_path / "whole" / "manifest.json").read_text())
    assert len(manifest["shards"]) >= 2 and points >= 3 * len(manifest["shards"])


# ---- SAE training -----------------------------------------------------------------------------
def make_acts(folder: Path) -> Path:
    """An activation folder of 1000 correlated 16-wide rows in four shards."""
    from interp.cache.store import write_activations

    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(1000, 16, generator=generator) @ torch.randn(16, 16, generator=generator)
    return write_activations(folder, {"blocks.0.hook_resid_post": rows}, shard_rows=300)


@pytest.fixture(scope="module")
def acts(tmp_path_factory) -> Path:
    return make_acts(tmp_path_factory.mktemp("fault-acts"))


def sae_config(acts: Path, out: Path, **overrides: Any):
    from interp.sae.config import SAETrainConfig

    options = dict(
        width=32, k=4, steps=14, batch_size=96, buffer_rows=250, checkpoint_every=4,
        eval_prompts=0, eval_rows=256, device="cpu", quiet=True,
    )  # fmt: skip
    options.update(overrides)
    return SAETrainConfig(acts=[str(acts)], out=str(out), **options)


def test_sae_stopped_at_every_write_point_resumes_bit_identically(acts, tmp_path):
    from interp.sae.train import train_sae

    points = check_every_stop(lambda out: train_sae(sae_config(acts, out)), tmp_path)
    assert points >= 2 * (14 // 4)  # each checkpoint: its state.json, then its folder


def test_sae_resume_reads_the_batches_an_uninterrupted_run_reads(acts):
    from interp.cache.stream import ActivationStream

    stream = ActivationStream(acts, "blocks.0.hook_resid_post", batch_size=96, buffer_rows=250,
                              seed=3, epochs=3)  # fmt: skip
    whole = list(stream)
    assert len(whole) == 3 * stream.batches_per_epoch
    for start in (0, 5, stream.batches_per_epoch, 2 * stream.batches_per_epoch + 1):
        resumed = list(stream.iter_from(start))
        assert len(resumed) == len(whole) - start
        assert all(torch.equal(a, b) for a, b in zip(resumed, whole[start:]))


# ---- training (slow) --------------------------------------------------------------------------
@pytest.mark.slow
def test_train_stopped_at_every_write_point_resumes_bit_identically(
    tiny_model_dir, items, tmp_path
):
    from interp.train import TrainConfig, train

    data = tmp_path / "vqa.jsonl"
    records = [
        {"image": item.image_path, "question": f"What is in {item.id}?", "answer": "A box."}
        for item in items
        if item.image_path
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in records))

    def run(out: Path) -> None:
        train(TrainConfig(model=str(tiny_model_dir("llava")), data=str(data), out=str(out),
                          method="lora", max_steps=4, batch_size=2, lr=5e-2, lora_r=4,
                          lora_dropout=0.1, save_every=1, quiet=True))  # fmt: skip

    points = check_every_stop(run, tmp_path / "runs")
    assert points >= 2 * 3  # each checkpoint: its state.json, then its folder


# ---- real kills and concurrent writers (slow) ---------------------------------------------------
KILLER = """
import os, signal, sys, time
from interp import artifacts
from interp.cli import main
seen = [0]
def hook(kind, path):
    seen[0] += 1
    if seen[0] == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    hold = os.environ.get("HOLD_UNTIL")  # wait at the first append until this file exists
    if hold and kind == "append" and seen[0] < 10:
        for _ in range(600):
            if os.path.exists(hold):
                break
            time.sleep(0.1)
artifacts.on_write = hook
sys.argv = ["vsfa", *sys.argv[1:]]
main()
"""


def _vsfa(args: list[str], kill_at: int = 0, hold: Path | None = None, **popen: Any) -> Any:
    import os
    import subprocess
    import sys

    env = {**os.environ, "KILL_AT": str(kill_at), "OMP_NUM_THREADS": "1"}
    if hold is not None:
        env["HOLD_UNTIL"] = str(hold)
    command = [sys.executable, "-c", KILLER, *args]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, **popen)


def _bench_file(items: list[BenchmarkItem], folder: Path) -> str:
    path = folder / "bench.jsonl"
    path.write_text("".join(json.dumps(item.to_dict()) + "\n" for item in items))
    return f"jsonl={path}"


@pytest.mark.slow
def test_sigkill_at_write_points_of_a_sampled_eval(tiny_model_dir, items, tmp_path):
    bench = _bench_file(items, tmp_path)

    def args(out: Path) -> list[str]:
        return ["eval", "-m", str(tiny_model_dir("llava")), "-b", bench, "-o", str(out),
                "--device", "cpu", "--sample", "--samples-per-item", "2", "--batch-size", "3",
                "--max-new-tokens", "3", "--n-boot", "50", "-q"]  # fmt: skip

    whole = tmp_path / "whole"
    assert _vsfa(args(whole)).wait() == 0
    expected = snapshot(whole)
    # the in-process stops above cover every point; real kills: the meta file, the second
    # batch's append, and the judged file (a process per run is slow on a shared CPU)
    for n in (1, 3, 5):
        out = tmp_path / f"kill{n}"
        assert _vsfa(args(out), kill_at=n).wait() == -9
        assert (out / ".vsfa.lock").exists()  # left by the killed writer
        rerun = _vsfa(args(out))
        assert rerun.wait() == 0, rerun.stderr.read()
        assert "taking over the stale lock" in rerun.stderr.read()
        assert snapshot(out) == expected, n
        assert not list(out.rglob(".*.tmp")) and not (out / ".vsfa.lock").exists(), n


@pytest.mark.slow
def test_two_writers_on_one_folder(tiny_model_dir, items, tmp_path):
    import subprocess

    bench = _bench_file(items, tmp_path)
    out = tmp_path / "eval"
    args = ["eval", "-m", str(tiny_model_dir("llava")), "-b", bench, "-o", str(out),
            "--device", "cpu", "--max-new-tokens", "3", "--batch-size", "1", "-q"]  # fmt: skip
    release = tmp_path / "release"
    first = _vsfa(args, hold=release)  # holds the folder at its first append until released
    while not (out / "generations.meta.json").exists():
        assert first.poll() is None, first.stderr.read()
    second = _vsfa(args, stdout=subprocess.PIPE)
    assert second.wait() == 2
    release.touch()
    lines = [line for line in second.stderr.read().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and f"pid {first.pid}" in lines[0]
    assert first.wait() == 0
    records = (out / "generations.jsonl").read_text().splitlines()
    assert len(records) == len(items)
    assert len({json.loads(r)["key"] for r in records}) == len(items)
