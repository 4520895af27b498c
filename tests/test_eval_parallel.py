"""``vsfa eval`` and ``vsfa steer`` under ``torchrun``: two processes (gloo) write the folder one
process writes, and a rank killed mid-run then a rerun end with the same folder.

The one-process runs go through the same command in this process; the two-process runs are
``torchrun --nproc_per_node 2 --standalone -m interp.cli ...`` on the model organism with its
exact judge, a few items per category and short replies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from interp.cli import app

organism = pytest.importorskip("interp.organism")

TIMEOUT = 600
GREEDY = ["--per-category", "2", "--batch-size", "2", "--max-new-tokens", "12"]
# batches of 3 over 2 samples per item: batches cut across items, as in one process
SAMPLED = ["--per-category", "2", "--batch-size", "3", "--max-new-tokens", "12", "--sample",
           "--samples-per-item", "2", "--temperature", "1.5", "--seed", "5"]  # fmt: skip
SAME_BYTES = ("generations.jsonl", "generations.meta.json", "judged.jsonl", "metrics.json")


def _model() -> str:
    try:
        return str(organism.base_model_dir())
    except Exception as error:  # the shipped weights are missing in this checkout
        pytest.skip(f"no organism base model: {error}")


def _eval_args(out: Path, decoding: list[str]) -> list[str]:
    return ["eval", "--model", _model(), "--bench", "organism", "--judge", "organism",
            "--device", "cpu", "--n-boot", "200", "--out", str(out), "-q", *decoding]  # fmt: skip


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _in_process(args: list[str]) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


def _torchrun(program: list[str], args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--standalone", *program, *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT,
                          env=_env(), cwd=cwd)  # fmt: skip


def _two_processes(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = _torchrun(["-m", "interp.cli"], args, cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _assert_same_folder(two: Path, one: Path) -> None:
    for name in SAME_BYTES:
        assert (two / name).read_bytes() == (one / name).read_bytes(), name
    manifests = [json.loads((folder / "manifest.json").read_text()) for folder in (one, two)]
    for key in ("stage", "config", "inputs", "seed", "counts", "complete"):
        assert manifests[0][key] == manifests[1][key], key
    assert (manifests[0]["processes"], manifests[1]["processes"]) == (1, 2)
    assert not list(two.glob("generations.rank*")), "rank files left after the merge"


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """``one_process(name) -> folder`` of the one-process eval (``greedy`` or ``sampled``)."""
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            out = tmp_path_factory.mktemp("one") / name
            _in_process(_eval_args(out, GREEDY if name == "greedy" else SAMPLED))
            made[name] = out
        return made[name]

    return get


def test_two_processes_write_the_one_process_folder_greedy(one_process, tmp_path):
    one = one_process("greedy")
    lines = (one / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 14 and len({json.loads(line)["response"] for line in lines}) > 1
    _two_processes(_eval_args(tmp_path / "two", GREEDY), tmp_path)
    _assert_same_folder(tmp_path / "two", one)


@pytest.mark.slow
def test_two_processes_write_the_one_process_folder_sampled(one_process, tmp_path):
    one = one_process("sampled")
    records = [json.loads(line) for line in (one / "generations.jsonl").read_text().splitlines()]
    assert [r["sample"] for r in records[:4]] == [0, 1, 0, 1] and len(records) == 28
    by_item: dict[str, set] = {}
    for record in records:
        by_item.setdefault(record["key"], set()).add(record["response"])
    assert any(len(replies) > 1 for replies in by_item.values())  # the draws differ
    _two_processes(_eval_args(tmp_path / "two", SAMPLED), tmp_path)
    _assert_same_folder(tmp_path / "two", one)


def test_one_process_rerun_folds_the_rank_files_of_a_killed_launch(one_process, tmp_path):
    """A two-rank run killed part-way leaves rank files (each rank's first records, with the
    setup in their meta); one process resumes from them to the one-process folder."""
    one = one_process("greedy")
    out = tmp_path / "killed"
    out.mkdir()
    lines = (one / "generations.jsonl").read_text().splitlines(keepends=True)
    meta = (one / "generations.meta.json").read_text()
    (out / "generations.meta.json").write_text(meta)
    # 7 batches of 2: rank 0 has batches 0-3 (lines 0-7), rank 1 batches 4-6 (lines 8-13);
    # one record marked, to see that the rerun kept it instead of generating it again
    marked = json.dumps({**json.loads(lines[8]), "new_tokens": -1}) + "\n"
    for rank, kept in ((0, lines[:4]), (1, [marked, lines[9]])):
        (out / f"generations.rank{rank}.jsonl").write_text("".join(kept))
        (out / f"generations.rank{rank}.meta.json").write_text(meta)
    (out / "generations.rank3.meta.json").write_text("{}")  # a stale meta of a larger launch
    _in_process(_eval_args(out, GREEDY))
    expected = lines[:8] + [marked] + lines[9:]
    assert (out / "generations.jsonl").read_text().splitlines(keepends=True) == expected
    assert (out / "metrics.json").read_bytes() == (one / "metrics.json").read_bytes()
    assert not list(out.glob("generations.rank*"))


KILLER = """
import os, signal, sys
from pathlib import Path
from interp import artifacts
from interp.cli import main
seen = [0]
def hook(kind, path):
    if os.environ.get("RANK") != os.environ["KILL_RANK"] or kind != os.environ["KILL_KIND"]:
        return
    if Path(path).name == os.environ["KILL_NAME"]:
        seen[0] += 1
        if seen[0] == int(os.environ["KILL_AT"]):
            os.kill(os.getpid(), signal.SIGKILL)
artifacts.on_write = hook
sys.argv = ["vsfa", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("decoding", "rank", "kind", "name", "at", "rerun"),
    [
        # rank 1 before its second batch's append: one batch of its share on disk; the rerun
        # is one process (it folds the rank files in)
        ("sampled", 1, "append", "generations.rank1.jsonl", 2, 1),
        # rank 0 before it writes the merged file: every rank's share on disk, none merged
        ("greedy", 0, "rename", "generations.jsonl", 1, 2),
    ],
)
def test_a_rank_killed_mid_run_then_a_rerun_gives_the_same_folder(
    one_process, tmp_path, monkeypatch, decoding, rank, kind, name, at, rerun
):
    one = one_process(decoding)
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    for key, value in (("KILL_RANK", rank), ("KILL_KIND", kind), ("KILL_NAME", name),
                       ("KILL_AT", at)):  # fmt: skip
        monkeypatch.setenv(key, str(value))
    out = tmp_path / "two"
    args = _eval_args(out, GREEDY if decoding == "greedy" else SAMPLED)
    killed = _torchrun([str(killer)], args, tmp_path)
    assert killed.returncode != 0 and not (out / "metrics.json").exists()
    left = sorted(path.name for path in out.glob("generations.rank*.jsonl"))
    assert f"generations.rank{rank}.jsonl" in left or rank == 0
    if kind == "append":  # the killed rank's first batch (3 rows) is on disk
        assert len((out / name).read_text().splitlines()) == 3
    else:  # both shares generated, nothing merged yet
        assert left == ["generations.rank0.jsonl", "generations.rank1.jsonl"]
        assert not (out / "generations.jsonl").exists()
    for key in ("KILL_RANK", "KILL_KIND", "KILL_NAME", "KILL_AT"):
        monkeypatch.delenv(key)
    if rerun == 2:
        _two_processes(args, tmp_path)
        _assert_same_folder(out, one)
    else:
        _in_process(args)
        for file in SAME_BYTES:
            assert (out / file).read_bytes() == (one / file).read_bytes(), file
        assert not list(out.glob("generations.rank*")), "rank files left after the rerun"


def _accelerate() -> str:
    found = Path(sys.executable).with_name("accelerate")
    return str(found) if found.exists() else (shutil.which("accelerate") or "")


def test_accelerate_cpu_launch_of_two_processes_is_refused(tmp_path):
    accelerate = _accelerate()
    if not accelerate:
        pytest.skip("the accelerate launcher is not installed here")
    out = tmp_path / "out"
    command = [accelerate, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "interp.cli",
               *_eval_args(out, GREEDY)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT,
                            env=_env(), cwd=tmp_path)  # fmt: skip
    if result.returncode != 0 and "returned non-zero exit status" not in result.stderr:
        pytest.skip(f"accelerate's launcher cannot start here: {result.stderr.strip()[-300:]}")
    assert result.returncode != 0 and "returned non-zero exit status 2" in result.stderr
    refusal = [line for line in result.stderr.splitlines() if "asked for several" in line]
    assert len(refusal) == 1 and "torchrun --nproc_per_node N -m interp.cli eval" in refusal[0]
    frames = [line for line in result.stderr.splitlines() if line.strip().startswith("File ")]
    assert not [line for line in frames if "/interp/" in line]  # no traceback from the workbench
    assert not out.exists()


def _steer_args(out: Path) -> list[str]:
    return ["steer", "--model", _model(), "--sae", str(organism.shipped_sae_dir()),
            "--bench", "organism", "--judge", "organism", "--per-category", "1",
            "--latent", "3", "--alphas", "0,8", "--n-random", "1", "--n-boot", "100",
            "--max-new-tokens", "8", "--batch-size", "2", "--device", "cpu", "--out", str(out),
            "-q"]  # fmt: skip


@pytest.mark.slow
def test_steer_sweep_with_two_processes_writes_the_one_process_numbers(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _in_process(_steer_args(one))
    _two_processes(_steer_args(two), tmp_path)
    result = json.loads((two / "steering.json").read_text())
    assert result == json.loads((one / "steering.json").read_text())
    assert len(result["curve"]) == 2 and len(result["random_control"]) == 2
    points = sorted(path.parent.relative_to(one) for path in one.rglob("generations.jsonl"))
    assert len(points) == 3  # unsteered, the latent at 8, the random latent at 8
    for point in points:
        assert (two / point / "generations.jsonl").read_bytes() == (
            one / point / "generations.jsonl"
        ).read_bytes(), point
