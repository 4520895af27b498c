"""Reliability: content-keyed currency, one writer per folder, orphans, resume checks, corrupt
checkpoints, and one line (exit 2) for every bad input in the table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_faults import Killed, make_acts, make_items, sae_config, snapshot, stop_at

from interp.errors import VSFAError
from interp.eval.generation import GenerationConfig
from interp.eval.run import evaluate
from interp.locks import LOCK, folder_lock
from interp.models import load_vlm

GREEDY = GenerationConfig(max_new_tokens=3, batch_size=2)


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    return make_items(tmp_path_factory.mktemp("reliability-images"))


@pytest.fixture(scope="module")
def acts(tmp_path_factory) -> Path:
    return make_acts(tmp_path_factory.mktemp("reliability-acts"))


def _copy_model(tiny_model_dir, tmp_path: Path, name: str = "model") -> Path:
    target = tmp_path / name
    shutil.copytree(tiny_model_dir("llava"), target)
    return target


def _perturb(folder: Path) -> None:
    """Rewrite the weights in place, as a retrained model saved to the same path would be."""
    file = folder / "model.safetensors"
    tensors = load_file(str(file))
    generator = torch.Generator().manual_seed(1)
    for name, value in tensors.items():
        if value.is_floating_point() and value.dim() == 2:
            tensors[name] = value + 0.5 * torch.randn(value.shape, generator=generator)
    save_file(tensors, str(file), metadata={"format": "pt"})


class Counting:
    """Counts the VLM's generate calls (a recompute generates, a current result does not)."""

    def __init__(self, vlm):
        self.vlm, self.calls = vlm, 0
        original = vlm.generate_ids

        def generate_ids(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        vlm.generate_ids = generate_ids


# ---- content-keyed currency -------------------------------------------------------------------
def test_eval_recomputes_after_the_model_is_rewritten_in_place(tiny_model_dir, items, tmp_path):
    model = _copy_model(tiny_model_dir, tmp_path)
    out = tmp_path / "eval"
    first = Counting(load_vlm(model, device="cpu", dtype="float32"))
    evaluate(first.vlm, items, out, judge="keyword", generation=GREEDY, n_boot=20, quiet=True)
    before = (out / "generations.jsonl").read_text()
    again = Counting(load_vlm(model, device="cpu", dtype="float32"))
    evaluate(again.vlm, items, out, judge="keyword", generation=GREEDY, n_boot=20, quiet=True)
    assert first.calls == 3 and again.calls == 0  # current: nothing generated
    _perturb(model)
    changed = Counting(load_vlm(model, device="cpu", dtype="float32"))
    evaluate(changed.vlm, items, out, judge="keyword", generation=GREEDY, n_boot=20, quiet=True)
    assert changed.calls == 3  # every item generated again, none kept from the old weights
    lines = (out / "generations.jsonl").read_text().splitlines()
    assert len(lines) == len(items) and (out / "generations.jsonl").read_text() != before
    # a fresh folder gives what the rerun gave
    fresh = tmp_path / "fresh"
    evaluate(changed.vlm, items, fresh, judge="keyword", generation=GREEDY, n_boot=20, quiet=True)
    assert (fresh / "generations.jsonl").read_bytes() == (out / "generations.jsonl").read_bytes()


def test_eval_recomputes_after_the_adapter_is_retrained_in_place(tiny_model_dir, items, tmp_path):
    from interp.train import TrainConfig, train

    model = tiny_model_dir("llava")
    data = tmp_path / "vqa.jsonl"
    lines = []
    for item in items:
        if item.image_path:
            record = {"image": item.image_path, "question": "What is shown?", "answer": "A box."}
            lines.append(json.dumps(record))
    data.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"

    def retrain(seed: int) -> None:
        train(TrainConfig(model=str(model), data=str(data), out=str(run), method="lora",
                          max_steps=2, batch_size=2, lr=5e-2, lora_r=4, seed=seed, quiet=True,
                          overwrite=True, save_every=0))  # fmt: skip

    retrain(0)
    out = tmp_path / "eval"
    first = Counting(load_vlm(model, adapter=run, device="cpu", dtype="float32"))
    evaluate(first.vlm, items, out, judge="keyword", generation=GREEDY, n_boot=20, quiet=True)
    retrain(1)
    second = Counting(load_vlm(model, adapter=run, device="cpu", dtype="float32"))
    evaluate(second.vlm, items, out, judge="keyword", generation=GREEDY, n_boot=20, quiet=True)
    assert first.calls == 3 and second.calls == 3
    fresh = tmp_path / "fresh"
    evaluate(second.vlm, items, fresh, judge="keyword", generation=GREEDY, n_boot=20, quiet=True)
    assert (fresh / "generations.jsonl").read_bytes() == (out / "generations.jsonl").read_bytes()


def test_eval_force_removes_the_old_results_first(tiny_vlm, items, tmp_path):
    counting = Counting(tiny_vlm("llava"))
    out = tmp_path / "eval"
    evaluate(counting.vlm, items, out, judge="keyword", generation=GREEDY, n_boot=20, quiet=True)
    whole = (out / "generations.jsonl").read_bytes()
    with open(out / "generations.jsonl", "a") as handle:  # a stale record that must not survive
        handle.write(json.dumps({"key": "toy/stale", "sample": 0, "response": "old"}) + "\n")
    counting.calls = 0
    evaluate(counting.vlm, items, out, judge="keyword", generation=GREEDY, n_boot=20,
             quiet=True, force=True)  # fmt: skip
    assert counting.calls == 3 and (out / "generations.jsonl").read_bytes() == whole


def test_cache_recomputes_after_the_prompt_file_is_edited(tiny_vlm, tmp_path):
    from interp.cache.config import CacheConfig
    from interp.cache.run import cache_activations_for
    from interp.cache.store import ActivationStore

    vlm = tiny_vlm("llava")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("how do I bake bread\nwhat is a cloud\n")
    out = tmp_path / "cache"
    config = CacheConfig(model=vlm.name_or_path, prompts=str(prompts), out=str(out),
                         hooks=["blocks.0.hook_resid_post"], device="cpu", quiet=True)  # fmt: skip
    cache_activations_for(vlm, str(prompts), config)
    before = ActivationStore(out).load("blocks.0.hook_resid_post")
    prompts.write_text("how do I bake a cake\nwhat is a river\n")  # same line count
    cache_activations_for(vlm, str(prompts), config)
    store = ActivationStore(out)
    texts = [p["prompt"] for p in store.prompts]
    assert texts == ["how do I bake a cake", "what is a river"]
    after = store.load("blocks.0.hook_resid_post")
    assert before.shape != after.shape or not torch.equal(before, after)


def test_steps_rerun_when_an_output_is_rewritten_in_place(tmp_path):
    from interp.pipeline.steps import Steps

    steps = Steps(tmp_path, "demo", echo=lambda _: None)
    calls: list[str] = []
    made = tmp_path / "made.txt"

    def make_up() -> dict:
        calls.append("up")
        made.write_text(f"made by call {len(calls)}")
        return {"file": str(made)}

    def make_down() -> dict:
        calls.append("down")
        return {}

    steps.run("up", {}, make_up)
    steps.run("down", {}, make_down, ["up"])
    steps.run("up", {}, make_up)
    steps.run("down", {}, make_down, ["up"])
    assert calls == ["up", "down"]
    made.write_text("v2")  # replaced by hand (or by another tool) at the same path
    steps = Steps(tmp_path, "demo", echo=lambda _: None)
    steps.run("up", {}, make_up)
    steps.run("down", {}, make_down, ["up"])
    assert calls == ["up", "down", "up", "down"]


# ---- one writer per folder --------------------------------------------------------------------
def _lock_of(folder: Path, pid: int, host: str | None = None) -> None:
    import socket

    folder.mkdir(parents=True, exist_ok=True)
    holder = {"pid": pid, "host": host or socket.gethostname(), "command": "vsfa eval ..."}
    (folder / LOCK).write_text(json.dumps(holder))


def test_a_second_writer_is_refused_naming_the_holder(tiny_vlm, items, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out = tmp_path / "eval"
        _lock_of(out, holder.pid)
        with pytest.raises(VSFAError, match=rf"being written by pid {holder.pid} on .*vsfa eval"):
            evaluate(tiny_vlm("llava"), items, out, judge="keyword", generation=GREEDY,
                     quiet=True)  # fmt: skip
        assert not (out / "generations.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_is_taken_over_with_a_warning(tiny_vlm, items, tmp_path, capsys):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    out = tmp_path / "eval"
    _lock_of(out, gone.pid)
    evaluate(tiny_vlm("llava"), items, out, judge="keyword", generation=GREEDY, n_boot=20,
             quiet=True)  # fmt: skip
    assert f"taking over the stale lock of pid {gone.pid}" in capsys.readouterr().err
    assert not (out / LOCK).exists() and (out / "metrics.json").exists()


def test_locks_are_reentrant_in_a_process_and_exclusive_across(tmp_path):
    folder = tmp_path / "out"
    with folder_lock(folder), folder_lock(folder):
        holder = json.loads((folder / LOCK).read_text())
        assert holder["pid"] == os.getpid()
        code = "from interp.locks import acquire; import sys; acquire(sys.argv[1])"
        other = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                               text=True)  # fmt: skip
        assert other.returncode != 0 and f"pid {os.getpid()}" in other.stderr
    assert not (folder / LOCK).exists()


# ---- orphans ----------------------------------------------------------------------------------
def test_orphan_temporary_files_are_removed_on_the_next_run(tiny_vlm, items, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    orphan = out / ".generations.jsonl.0123456789ab.tmp"
    orphan.write_text("half")
    keep = out / "notes.txt"
    keep.write_text("mine")
    evaluate(tiny_vlm("llava"), items, out, judge="keyword", generation=GREEDY, n_boot=20,
             quiet=True)  # fmt: skip
    assert not orphan.exists() and keep.read_text() == "mine"


# ---- SAE resume -------------------------------------------------------------------------------
def _stopped_sae(acts: Path, out: Path, at: int = 3) -> None:
    from interp.sae.train import train_sae

    with pytest.raises(Killed), stop_at(at):
        train_sae(sae_config(acts, out))


@pytest.mark.parametrize(
    ("change", "named"), [({"width": 48}, "--width 32 there, 48 now"), ({"lr": 1e-3}, "--lr")]
)
def test_sae_resume_with_other_settings_is_refused_naming_them(acts, tmp_path, change, named):
    from interp.sae.train import train_sae

    out = tmp_path / "sae"
    _stopped_sae(acts, out)
    with pytest.raises(VSFAError, match=named):
        train_sae(sae_config(acts, out, **change))
    train_sae(sae_config(acts, out, overwrite=True, **change))  # starts over
    whole = tmp_path / "whole"
    train_sae(sae_config(acts, whole, **change))
    assert snapshot(out) == snapshot(whole)


def test_a_corrupt_sae_checkpoint_falls_back_to_the_previous_one(acts, tmp_path, capsys):
    from interp.sae.train import train_sae

    whole = tmp_path / "whole"
    train_sae(sae_config(acts, whole))
    out = tmp_path / "sae"
    _stopped_sae(acts, out, at=5)  # after two checkpoints
    newest = sorted((out / "checkpoint").glob("step_*"))
    assert len(newest) == 2
    tensors = newest[-1] / "state.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-64])
    train_sae(sae_config(acts, out))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"SAE checkpoint {newest[-1]} is unreadable" in err
    assert snapshot(out) == snapshot(whole)


def test_a_corrupt_training_checkpoint_is_reported_and_skipped(tiny_model_dir, items, tmp_path,
                                                               capsys):  # fmt: skip
    from interp.train import TrainConfig, train

    data = tmp_path / "vqa.jsonl"
    records = [{"image": i.image_path, "question": "What?", "answer": "A box."} for i in items
               if i.image_path]  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in records))

    def config(out: Path) -> TrainConfig:
        return TrainConfig(model=str(tiny_model_dir("llava")), data=str(data), out=str(out),
                           method="lora", max_steps=4, batch_size=2, lr=5e-2, lora_r=4,
                           save_every=1, quiet=True)  # fmt: skip

    whole = train(config(tmp_path / "whole"))
    run = tmp_path / "run"
    train(config(run), stop_after=3)
    checkpoint = run / "checkpoints" / "step_0000003"
    (checkpoint / "optimizer.safetensors").write_bytes(b"\x00" * 40)
    capsys.readouterr()
    train(config(run))  # from step 0: keep=1 leaves no earlier checkpoint
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"training checkpoint {checkpoint} is corrupt" in warnings[0]
    a = load_file(str(whole / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
