"""Launch detection: ``vsfa train`` never runs one process where several were asked for."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from interp.errors import VSFAError
from interp.models.tiny import tiny_image
from interp.parallel import check_launch

ACCELERATE_ONE = {"ACCELERATE_USE_CPU": "True", "ACCELERATE_MIXED_PRECISION": "no"}


@pytest.mark.parametrize(
    "env",
    [
        {},  # a plain process
        dict(ACCELERATE_ONE),  # accelerate launch --cpu (one process asked for)
        {**ACCELERATE_ONE, "MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "2"},  # --multi_gpu
        {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "WORLD_SIZE": "2", "RANK": "1"},
        {"PMI_SIZE": "1"},
    ],
)
def test_launches_that_run_what_they_asked_for_pass(env):
    check_launch(env)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({**ACCELERATE_ONE, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}, "started one"),
        ({"OMPI_COMM_WORLD_SIZE": "4"}, "MPI launch of 4"),
        ({"PMI_SIZE": "2", **ACCELERATE_ONE}, "MPI launch of 2"),
    ],
)
def test_launches_that_would_run_alone_are_refused_in_one_line(env, words):
    with pytest.raises(VSFAError, match=words) as error:
        check_launch(env)
    assert "\n" not in str(error.value) and "torchrun --nproc_per_node" in str(error.value)


def _accelerate() -> str:
    found = Path(sys.executable).with_name("accelerate")
    return str(found) if found.exists() else (shutil.which("accelerate") or "")


@pytest.fixture
def tiny_vqa(tmp_path):
    for i in range(4):
        tiny_image(i).save(tmp_path / f"img{i}.png")
    records = [
        {"id": f"r{i}", "image": f"img{i}.png", "question": "What is shown?", "answer": "A box."}
        for i in range(4)
    ]
    path = tmp_path / "vqa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _launch(tmp_path, model, data, out, *flags: str) -> subprocess.CompletedProcess:
    accelerate = _accelerate()
    if not accelerate:
        pytest.skip("the accelerate launcher is not installed here")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [
        accelerate, "launch", "--cpu", *flags, "-m", "interp.cli", "train",
        "--model", str(model), "--data", str(data), "--out", str(out),
        "--max-steps", "2", "--batch-size", "2", "--lora-r", "2", "--quiet",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    started = result.returncode == 0 or "returned non-zero exit status" in result.stderr
    if not started:  # the launcher failed before starting the command
        pytest.skip(f"accelerate's launcher cannot start here: {result.stderr.strip()[-300:]}")
    return result


def test_accelerate_cpu_launch_of_two_processes_is_refused(tiny_model_dir, tiny_vqa, tmp_path):
    out = tmp_path / "run"
    result = _launch(
        tmp_path, tiny_model_dir("llava"), tiny_vqa, out,
        "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no",
    )  # fmt: skip
    # the command exits 2 with one line; accelerate reports that exit status (its own traceback)
    assert result.returncode != 0 and "returned non-zero exit status 2" in result.stderr
    refusal = [line for line in result.stderr.splitlines() if "asked for several" in line]
    assert len(refusal) == 1 and "torchrun --nproc_per_node N" in refusal[0]
    assert "interp/" not in result.stderr  # no traceback from the workbench
    assert not (out / "manifest.json").exists()


@pytest.mark.slow
def test_accelerate_cpu_launch_of_one_process_trains(tiny_model_dir, tiny_vqa, tmp_path):
    out = tmp_path / "run"
    result = _launch(
        tmp_path, tiny_model_dir("llava"), tiny_vqa, out,
        "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["processes"] == 1 and manifest["steps"] == 2
