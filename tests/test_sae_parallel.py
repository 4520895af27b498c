"""``vsfa sae train`` with several processes (torchrun, gloo) trains the one-process SAE.

Two processes at the same global ``--batch-size`` give the one-process weights and metrics
within float tolerance; a rank SIGKILLed mid-run, then the same command again, gives the same
SAE; launches that would run one process where several were asked for are refused.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from sae_lens.synthetic import ActivationGenerator, FeatureDictionary
from safetensors.torch import load_file

from interp.cache import write_activations
from interp.errors import VSFAError
from interp.parallel import Ranks
from interp.sae import SAETrainConfig, train_sae

HOOK = "blocks.0.hook_resid_post"
# 3,003 rows: 12 batches of 250 and one of 3 per epoch (split 2 + 1 over two ranks)
ROWS, BATCH = 3003, 250
OPTIONS = dict(
    width=96, k=4, steps=60, batch_size=BATCH, buffer_rows=1000, lr=1e-2, dead_feature_window=5,
    checkpoint_every=10, eval_prompts=0, eval_rows=1024, device="cpu", quiet=True, seed=1,
)  # fmt: skip
# Two processes sum two share-weighted half-batch gradients where one process sums one batch,
# so the float32 roundings differ; over these 60 Adam steps the weights stay within 1e-5 of
# the one-process ones (measured: at most 4.2e-7 apart, entries up to 0.57; the logged
# losses and FVUs within 2e-7 relative).
ATOL, RTOL = 1e-5, 1e-4
TIMEOUT = 300


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def acts(tmp_path_factory) -> Path:
    """Sparse combinations of 48 known features in 24 dimensions (sae_lens's synthetic data)."""
    features = FeatureDictionary(48, 24, seed=0, initializer=None)
    generator = ActivationGenerator(
        48, firing_probabilities=0.06, std_firing_magnitudes=0.1, mean_firing_magnitudes=1.0
    )
    torch.manual_seed(0)
    with torch.no_grad():
        rows = features(generator.sample(ROWS))
    return write_activations(tmp_path_factory.mktemp("acts"), {HOOK: rows}, shard_rows=700)


def _command(acts: Path, out: Path, processes: int, **changes) -> list[str]:
    flags = [f"--{k.replace('_', '-')}" if v is True else f"--{k.replace('_', '-')}={v}"
             for k, v in {**OPTIONS, **changes}.items()]  # fmt: skip
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
              "--standalone", "-m", "interp.cli"]  # fmt: skip
    return [*launch, "sae", "train", "--acts", str(acts), "--out", str(out), *flags]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _torchrun(acts: Path, out: Path, processes: int = 2, **changes) -> subprocess.CompletedProcess:
    result = subprocess.run(
        _command(acts, out, processes, **changes), capture_output=True, text=True, timeout=TIMEOUT,
        env=_env(), cwd=out.parent,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def one_process(acts, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "sae"
    return train_sae(SAETrainConfig(acts=[str(acts)], out=str(out), **OPTIONS))


@pytest.fixture(scope="module")
def two_processes(acts, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two") / "sae"
    _torchrun(acts, out)
    return out


def _assert_same_sae(a: Path, b: Path, atol: float = ATOL, rtol: float = RTOL) -> None:
    wa, wb = (
        load_file(str(a / "sae_weights.safetensors")),
        load_file(str(b / "sae_weights.safetensors")),
    )
    assert sorted(wa) == sorted(wb) == ["W_dec", "W_enc", "b_dec", "b_enc"]
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], atol=atol, rtol=rtol, msg=name)
    assert json.loads((a / "cfg.json").read_text()) == json.loads((b / "cfg.json").read_text())


def test_two_processes_train_the_one_process_sae(one_process, two_processes):
    _assert_same_sae(one_process, two_processes)
    one = json.loads((one_process / "metrics.json").read_text())
    two = json.loads((two_processes / "metrics.json").read_text())
    for key in ("fvu", "explained_variance", "mse", "l0", "dead_fraction", "dense_fraction"):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key
    assert one["fvu"] < 0.5  # it learned something: the comparison is not of two untrained SAEs
    assert [e["step"] for e in two["history"]] == [e["step"] for e in one["history"]]
    assert len(one["history"]) == 60  # every step
    for e1, e2 in zip(one["history"], two["history"]):
        # the logged loss, FVU and L0 are the global batch's, the 3-row batches included
        for key in ("loss", "fvu", "l0", "mse_loss", "auxiliary_reconstruction_loss"):
            assert e2[key] == pytest.approx(e1[key], rel=1e-5, abs=1e-6), (e1["step"], key)
    assert any(e["auxiliary_reconstruction_loss"] > 0 for e in one["history"])  # dead latents
    assert one["dead_fraction_train_window"] == two["dead_fraction_train_window"]
    manifests = [
        json.loads((p / "manifest.json").read_text()) for p in (one_process, two_processes)
    ]
    assert [m["processes"] for m in manifests] == [1, 2]
    assert not (two_processes / "checkpoint").exists()


@pytest.mark.slow
def test_three_processes_where_a_rank_gets_no_rows_train_the_one_process_sae(acts, tmp_path):
    # 3,003 = 19 x 158 + 1: each epoch ends with a 1-row batch, so ranks 1 and 2 hold no rows
    changes = dict(batch_size=158, steps=40)
    alone = train_sae(
        SAETrainConfig(acts=[str(acts)], out=str(tmp_path / "one"), **{**OPTIONS, **changes})
    )
    three = tmp_path / "three"
    _torchrun(acts, three, 3, **changes)
    _assert_same_sae(alone, three)
    one, other = (json.loads((p / "metrics.json").read_text())["history"] for p in (alone, three))
    assert len(one) == len(other) == 40
    for e1, e3 in zip(one, other):
        for key in ("loss", "fvu", "l0"):
            assert e3[key] == pytest.approx(e1[key], rel=1e-5, abs=1e-6), (e1["step"], key)


@pytest.mark.slow
def test_two_processes_match_one_with_sae_lens_step_and_normalisation(acts, tmp_path):
    """The standard SAE (sae_lens's own step, L1 penalty) on rescaled activations."""
    changes = dict(
        arch="standard", width=64, steps=20, lr=1e-3, normalize="expected_average_only_in"
    )
    alone = train_sae(
        SAETrainConfig(acts=[str(acts)], out=str(tmp_path / "one"), **{**OPTIONS, **changes})
    )
    two = tmp_path / "two"
    _torchrun(acts, two, 2, **changes)
    _assert_same_sae(alone, two)
    one, other = (json.loads((p / "metrics.json").read_text()) for p in (alone, two))
    assert one["scaling_factor"] == other["scaling_factor"] != 1.0
    for e1, e2 in zip(one["history"], other["history"], strict=True):
        for key in ("loss", "fvu", "l0", "mse_loss", "l1_loss"):
            assert e2[key] == pytest.approx(e1[key], rel=1e-5, abs=1e-6), (e1["step"], key)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the launched process whose environment says ``RANK=rank``."""
    todo = [launcher]
    while todo:
        pid = todo.pop()
        children = _children(pid)
        todo.extend(children)
        for child in children:
            try:
                environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if (
                f"RANK={rank}".encode() in environ
                and b"LOCAL_RANK=" + str(rank).encode() in environ
            ):
                return child
    return None


def _kill_rank_1_after_a_checkpoint(command: list[str], out: Path, cwd: Path) -> list[int]:
    """Launch ``command`` (two ranks), SIGKILL rank 1 once a checkpoint is written; assert the
    launch failed mid-run and return the steps of the checkpoints it left."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=cwd
    )
    try:
        deadline = time.time() + TIMEOUT
        while not list((out / "checkpoint").glob("step_*")) and time.time() < deadline:
            assert process.poll() is None, process.communicate()[1][-3000:]
            time.sleep(0.02)
        pid = _rank_pid(process.pid, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        process.wait(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
    assert process.returncode != 0
    assert not (out / "sae_weights.safetensors").exists()  # it stopped mid-run
    steps = [int(p.name.split("_")[1]) for p in (out / "checkpoint").glob("step_*")]
    assert steps and max(steps) < OPTIONS["steps"]
    return steps


@pytest.mark.slow
def test_a_rank_killed_mid_run_then_rerun_gives_the_same_sae(
    acts, one_process, two_processes, tmp_path
):
    out = tmp_path / "sae"
    _kill_rank_1_after_a_checkpoint(_command(acts, out, 2), out, tmp_path)
    # the checkpoint holds the global state only: one process continues it as well
    alone = tmp_path / "alone"
    shutil.copytree(out, alone)
    train_sae(SAETrainConfig(acts=[str(acts)], out=str(alone), **OPTIONS))
    _assert_same_sae(one_process, alone)
    _torchrun(acts, out)  # the same command again: resumes from rank 0's last checkpoint
    # the resumed run repeats the uninterrupted one's arithmetic exactly
    _assert_same_sae(two_processes, out, atol=0.0, rtol=0.0)
    histories = [
        json.loads((p / "metrics.json").read_text())["history"] for p in (two_processes, out)
    ]
    assert histories[0] == histories[1]


def test_accelerate_cpu_launch_of_several_processes_is_refused(acts, tmp_path, monkeypatch, capsys):
    """``accelerate launch --cpu --num_processes 2`` starts one process with these variables."""
    from interp.cli import main

    for name, value in {"ACCELERATE_USE_CPU": "True", "ACCELERATE_MIXED_PRECISION": "no",
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    out = tmp_path / "sae"
    monkeypatch.setattr(
        sys, "argv", ["vsfa", "sae", "train", "--acts", str(acts), "--out", str(out)]
    )
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "started one" in lines[0], lines
    assert "torchrun --nproc_per_node N -m interp.cli sae train" in lines[0]
    assert not out.exists()


def test_batchtopk_with_several_processes_is_refused_in_one_line():
    from interp.sae.train import _check_parallel

    config = SAETrainConfig(acts=["a"], out="b", arch="batchtopk")
    with pytest.raises(VSFAError, match="whole batch") as error:
        _check_parallel(config, Ranks(rank=0, world_size=2))
    assert "\n" not in str(error.value)
    _check_parallel(SAETrainConfig(acts=["a"], out="b", arch="topk"), Ranks(rank=0, world_size=2))


# --distribute-latents: each of two processes holds half the latents and sees the whole batch
# (plain autograd on its slice) where one process runs the fused sparse step on all of them:
# other float32 roundings. Over these 40 Adam steps (AuxK on from step ~6) the weights were at
# most 2.5e-6 apart (entries up to 0.56), the logged losses within 4e-7 relative.
LATENTS = dict(checkpoint_every=0, steps=40)
LATENTS_ATOL, LATENTS_RTOL = 2e-5, 1e-4


@pytest.mark.slow
def test_distributed_latents_train_the_one_process_sae(acts, tmp_path):
    alone = train_sae(
        SAETrainConfig(acts=[str(acts)], out=str(tmp_path / "one"), **{**OPTIONS, **LATENTS})
    )
    shared = tmp_path / "two"
    _torchrun(acts, shared, distribute_latents=True, **LATENTS)
    _assert_same_sae(alone, shared, atol=LATENTS_ATOL, rtol=LATENTS_RTOL)
    one = json.loads((alone / "metrics.json").read_text())
    two = json.loads((shared / "metrics.json").read_text())
    assert sorted(one) == sorted(two)
    assert one["fvu"] < 0.5
    for key in ("fvu", "l0", "dead_fraction"):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key
    assert any(e["auxiliary_reconstruction_loss"] > 0 for e in one["history"])  # AuxK exercised
    for e1, e2 in zip(one["history"], two["history"], strict=True):
        for key in ("loss", "fvu", "l0", "mse_loss", "auxiliary_reconstruction_loss"):
            assert e2[key] == pytest.approx(e1[key], rel=1e-5, abs=1e-6), (e1["step"], key)
    assert one["dead_fraction_train_window"] == two["dead_fraction_train_window"]
    assert (one["fast_step"], two["fast_step"]) == (True, False)  # the sharded step ran


def test_distributed_latents_refused_in_one_process(acts, tmp_path):
    config = SAETrainConfig(
        acts=[str(acts)], out=str(tmp_path / "sae"), distribute_latents=True,
        **{**OPTIONS, **LATENTS},
    )  # fmt: skip
    with pytest.raises(VSFAError, match="several processes"):
        train_sae(config)
    assert not (tmp_path / "sae").exists()


@pytest.mark.parametrize(
    "changes", [dict(arch="jumprelu"), dict(arch="batchtopk"), dict(width=[96, 192])]
)
def test_distributed_latents_refused_for_other_settings(acts, tmp_path, changes):
    with pytest.raises(VSFAError, match="--distribute-latents"):
        SAETrainConfig(
            acts=[str(acts)], out=str(tmp_path / "sae"), distribute_latents=True,
            **{**OPTIONS, **LATENTS, **changes},
        )  # fmt: skip


@pytest.mark.slow
def test_distributed_latents_killed_mid_run_resume_from_a_whole_checkpoint(
    acts, one_process, tmp_path
):
    """A rank SIGKILLed after a checkpoint, then the same command: every rank keeps its slice of
    the gathered (one-process format) checkpoint, and the SAE is the one-process one."""
    out = tmp_path / "sae"
    command = _command(acts, out, 2, distribute_latents=True)
    steps = _kill_rank_1_after_a_checkpoint(command, out, tmp_path)
    tensors = load_file(str(out / "checkpoint" / f"step_{max(steps):09d}" / "state.safetensors"))
    assert tensors["sae.W_enc"].shape == (24, OPTIONS["width"])  # whole, not a slice
    assert tensors["adam.W_enc.exp_avg"].numel() == 24 * OPTIONS["width"]
    _torchrun(acts, out, distribute_latents=True)
    _assert_same_sae(one_process, out, atol=LATENTS_ATOL, rtol=LATENTS_RTOL)
