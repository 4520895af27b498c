"""Several SAEs from one pass: each equals the same SAE trained alone; a stopped run resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from interp.cache import write_activations
from interp.cache.stream import ActivationStream
from interp.errors import VSFAError
from interp.sae import SAETrainConfig, load_sae
from interp.sae.multi import JointStream, sae_specs, train_saes
from interp.sae.train import train_sae
from tests.test_faults import Killed, check_every_stop, snapshot, stop_at

HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def acts(tmp_path_factory) -> Path:
    """600 rows of two hooks (16 wide, different scales) in three shards."""
    generator = torch.Generator().manual_seed(0)
    mix = torch.randn(16, 16, generator=generator)
    first = torch.randn(600, 16, generator=generator) @ mix
    second = torch.tanh(first) * 5 + 0.3 * torch.randn(600, 16, generator=generator)
    tensors = {HOOKS[0]: first, HOOKS[1]: second}
    return write_activations(tmp_path_factory.mktemp("acts"), tensors, shard_rows=250)


def config(acts: Path, out: Path, **overrides) -> SAETrainConfig:
    options = dict(
        width=32, k=4, steps=9, batch_size=64, buffer_rows=200, checkpoint_every=4,
        eval_prompts=0, eval_rows=256, device="cpu", quiet=True,
    )  # fmt: skip
    options.update(overrides)
    return SAETrainConfig(acts=[str(acts)], out=str(out), **options)


@pytest.mark.parametrize("normalize", ["none", "expected_average_only_in"])
def test_joint_stream_hands_each_hook_the_batches_of_its_own_stream(acts, normalize):
    options = dict(batch_size=64, buffer_rows=200, seed=3, epochs=2, normalize=normalize)
    joint = JointStream([acts], list(HOOKS), **options)
    for hook in HOOKS:
        alone = ActivationStream([acts], hook, **options)
        assert joint.alone[hook].scaling_factor == alone.scaling_factor
        for start in (0, 5, alone.batches_per_epoch + 1):
            got = [batch[hook] for batch in joint.iter_from(start)]
            expected = list(alone.iter_from(start))
            assert len(got) == len(expected) > 0
            assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert not torch.equal(*(next(iter(joint))[h] for h in HOOKS))  # two hooks, not one twice


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "sae_weights.safetensors"))


def _without_timings(folder: Path, name: str) -> dict:
    data = json.loads((folder / name).read_text())
    for key in ("created", "train_seconds", "versions"):
        data.pop(key, None)
    return data


@pytest.mark.parametrize("arch", ["topk", "standard"])
def test_each_sae_trained_jointly_equals_it_trained_alone(acts, tmp_path, arch):
    ks = [4, 8] if arch == "topk" else 4
    joint = config(acts, tmp_path / "joint", arch=arch, hook_name=list(HOOKS), width=[32, 48], k=ks)
    paths = train_saes(joint)
    suffixes = ["-k4", "-k8"] if arch == "topk" else [""]
    expected = [f"{h}-w{w}{s}" for h in HOOKS for w in (32, 48) for s in suffixes]
    assert list(paths) == expected
    assert sorted(p.name for p in (tmp_path / "joint").iterdir() if p.is_dir()) == sorted(expected)
    index = json.loads((tmp_path / "joint" / "manifest.json").read_text())
    assert index["stage"] == "sae-multi" and index["complete"]
    assert [s["name"] for s in index["saes"]] == expected
    for spec in sae_specs(joint, []):
        alone = train_sae(replace_out(spec.config(joint), tmp_path / "alone" / spec.name))
        together = paths[spec.name]
        got, want = _weights(together), _weights(alone)
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-6, atol=1e-7, msg=key)
        metrics = _without_timings(together, "metrics.json")
        assert metrics == _without_timings(alone, "metrics.json")
        assert metrics["hook_name"] == spec.hook_name and metrics["d_sae"] == spec.width
        cfg = json.loads((together / "cfg.json").read_text())
        assert cfg["metadata"]["hook_name"] == spec.hook_name
        manifest = _without_timings(together, "manifest.json")
        assert manifest["config"] == _without_timings(alone, "manifest.json")["config"]
        assert load_sae(together).cfg.d_sae == spec.width
    # the two hooks' SAEs differ: each read its own hook
    first, second = (_weights(paths[f"{h}-w32{suffixes[0]}"])["W_dec"] for h in HOOKS)
    assert not torch.equal(first, second)


def replace_out(sub: SAETrainConfig, out: Path) -> SAETrainConfig:
    from dataclasses import replace

    return replace(sub, out=str(out))


def test_a_multi_sae_run_stopped_at_every_write_point_resumes_to_the_same_artifacts(acts, tmp_path):
    def run(out: Path) -> None:
        train_saes(config(acts, out, hook_name=list(HOOKS), width=16, steps=6, k=2))

    points = check_every_stop(run, tmp_path)
    assert points >= 2 * 4  # per SAE: a checkpoint (state.json, folder), metrics, manifest


def test_a_resume_continues_each_sae_from_its_own_checkpoint(acts, tmp_path, monkeypatch):
    """Some SAEs saved, the others checkpointed: the rerun keeps the saved ones, trains each
    other one only for the steps after its checkpoint, and ends with the uninterrupted run's
    artifacts."""
    import interp.sae.fit as fit_module

    whole = tmp_path / "whole"
    options = dict(hook_name=list(HOOKS), width=[16, 24], k=2, steps=10, checkpoint_every=3)
    train_saes(config(acts, whole, **options))
    out = tmp_path / "out"
    with stop_at(None) as seen:
        train_saes(config(acts, tmp_path / "count", **options))
    with pytest.raises(Killed), stop_at(seen["n"] - 3):  # among the last SAEs' final writes
        train_saes(config(acts, out, **options))
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    steps = {f.name: sorted((f / "checkpoint").glob("step_*")) for f in folders}
    saved = {n: (out / n / "sae_weights.safetensors").stat().st_mtime_ns
             for n, s in steps.items() if not s}  # fmt: skip
    left = {n: int(s[-1].name.split("_")[1]) for n, s in steps.items() if s}
    assert len(folders) == 4 and saved and left  # some saved, some not
    real_step, calls = fit_module.fast_training_step, []
    monkeypatch.setattr(
        fit_module, "fast_training_step", lambda *a: calls.append(1) or real_step(*a)
    )
    train_saes(config(acts, out, **options))
    assert len(calls) == sum(10 - step for step in left.values())
    assert snapshot(out) == snapshot(whole)
    for name, mtime in saved.items():  # kept, not written again
        assert (out / name / "sae_weights.safetensors").stat().st_mtime_ns == mtime


def test_one_sae_is_the_single_run_unchanged(acts, tmp_path):
    single = train_saes(config(acts, tmp_path / "a", hook_name=[HOOKS[1]], width=[32], k=[4]))
    assert single == {"a": tmp_path / "a"}
    train_sae(config(acts, tmp_path / "b", hook_name=HOOKS[1]))
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")
    assert not (tmp_path / "a" / HOOKS[1]).exists()


def test_cli_hooks_widths_and_ks(acts, tmp_path):
    from interp.cli import app

    out = tmp_path / "cli"
    args = ["sae", "train", "--acts", str(acts), "--hooks", ",".join(HOOKS), "--d-sae", "16,24",
            "--k", "2", "--steps", "3", "--batch-size", "64", "--eval-prompts", "0",
            "--eval-rows", "128", "--device", "cpu", "-q", "-o", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "fvu" in line]
    assert len(lines) == 4
    assert all(f"{out}/{h}-w{w}-k2: fvu" in result.output for h in HOOKS for w in (16, 24))
    both = CliRunner().invoke(app, [*args[:4], "--hook", HOOKS[0], *args[4:]])
    assert isinstance(both.exception, VSFAError) and "--hook or --hooks" in str(both.exception)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"width": [16, 16]}, "--width [16, 16]: each value at most once"),
        ({"arch": "standard", "k": [2, 4]}, "--k with several values needs --arch topk"),
        ({"width": [4, 16], "k": 8}, "--k 8 is larger than --width 4"),
        ({"hook_name": list(HOOKS), "log": "wandb"}, "--log wandb"),
        ({"hook_name": [HOOKS[0], "blocks.7.hook_resid_post"]}, "blocks.7.hook_resid_post"),
    ],
)
def test_bad_lists_are_refused_in_one_line(acts, tmp_path, overrides, message):
    with pytest.raises(VSFAError, match=message.replace("[", r"\[").replace("]", r"\]")):
        train_saes(config(acts, tmp_path / "bad", **overrides))
    assert not list((tmp_path / "bad").glob("*/sae_weights.safetensors"))


@pytest.mark.slow
def test_two_processes_train_the_one_process_saes(acts, tmp_path):
    """Under torchrun every SAE trains data-parallel as one SAE does, in the same turns on
    every rank (their collectives stay matched), to the one-process SAEs."""
    import os
    import subprocess
    import sys

    options = dict(hook_name=list(HOOKS), width=[16, 24], k=2, steps=6, lr=1e-2)
    one = train_saes(config(acts, tmp_path / "one", **options))
    out = tmp_path / "two"
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
              "--standalone", "-m", "interp.cli", "sae", "train", "--acts", str(acts),
              "--hooks", ",".join(HOOKS), "--width", "16,24", "--k", "2", "--steps", "6",
              "--lr", "0.01", "--batch-size", "64", "--buffer-rows", "200",
              "--checkpoint-every", "4", "--eval-prompts", "0", "--eval-rows", "256",
              "--device", "cpu", "-q", "-o", str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    result = subprocess.run(launch, capture_output=True, text=True, timeout=300, env=env,
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for name, folder in one.items():
        got, want = _weights(out / name), _weights(folder)
        for key in want:
            torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=1e-4, msg=key)
        manifest = json.loads((out / name / "manifest.json").read_text())
        assert manifest["processes"] == 2 and manifest["complete"]
    assert json.loads((out / "manifest.json").read_text())["complete"]


def test_train_sae_refuses_several_saes_in_one_line(acts, tmp_path):
    with pytest.raises(VSFAError, match="list several SAEs; train them with `vsfa sae train`"):
        train_sae(config(acts, tmp_path / "one", width=[16, 24]))
    assert not (tmp_path / "one").exists()


@pytest.mark.slow
def test_a_multi_sae_cli_run_killed_mid_run_then_rerun_gives_the_same_saes(acts, tmp_path):
    import os
    import subprocess
    import sys
    import time

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "interp.cli", "sae", "train", "--acts", str(acts),
               "--hooks", ",".join(HOOKS), "--width", "16,24", "--k", "2", "--steps", "60",
               "--batch-size", "64", "--buffer-rows", "200", "--checkpoint-every", "5",
               "--eval-prompts", "0", "--eval-rows", "256", "--device", "cpu", "-q",
               "-o"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([*command, str(out)], stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 300
        while not list(out.glob("*/checkpoint/step_*")) and time.time() < deadline:
            assert process.poll() is None, process.communicate()[1][-3000:]
            time.sleep(0.02)
        process.kill()  # SIGKILL
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -9
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    rerun = subprocess.run([*command, str(out)], capture_output=True, text=True, env=env,
                           timeout=300)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    whole = subprocess.run([*command, str(tmp_path / "whole")], capture_output=True, text=True,
                           env=env, timeout=300)  # fmt: skip
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert snapshot(out, ignore=(".vsfa.lock",)) == snapshot(tmp_path / "whole")
