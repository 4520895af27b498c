"""``vsfa cache`` under ``torchrun``: two processes (gloo) write, row for row and bit for bit, the
activation folder one process writes; a rank killed mid-run resumes; launches that would run
one process where several were asked for are refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from interp.cache import ActivationStore, ActivationStream, CacheConfig
from interp.cache.ranks import rank_slices
from interp.cache.run import cache_activations
from interp.errors import VSFAError
from interp.models.tiny import tiny_image

HOOKS = "blocks.0.hook_resid_post,blocks.1.hook_resid_post"
BATCH = 2
N_PROMPTS = 7  # 4 batches: rank 0 caches batches 0-1 (prompts 0-3), rank 1 batches 2-3

# A rank that kills itself (SIGKILL) right after it wrote its first shard: a real kill mid-run,
# at a known point. torchrun then stops the other rank.
KILL_RANK_1 = """
import os, signal, sys
import interp.cache.store as store

if os.environ.get("RANK") == "1":
    flush = store.ShardWriter.flush

    def flush_then_die(self, resume):
        flush(self, resume)
        if self.manifest["shards"]:
            os.kill(os.getpid(), signal.SIGKILL)

    store.ShardWriter.flush = flush_then_die
from interp.cli import main

sys.argv = ["vsfa", *sys.argv[1:]]
main()
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A VQA file mixing text-only and image prompts of several lengths, some with answers."""
    folder = tmp_path_factory.mktemp("vqa")
    records = []
    for i in range(N_PROMPTS):
        if i % 2:
            tiny_image(i).save(folder / f"img{i}.png")
        records.append(
            {
                "id": f"p{i}",
                "image": f"img{i}.png" if i % 2 else None,
                "question": "what is shown here? " * (1 + i % 3),
                "answer": "a small cat" if i % 3 else None,
            }
        )
    path = folder / "vqa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _args(model: Path, data: Path, out: Path) -> list[str]:
    return [
        "cache", "--model", str(model), "--prompts", str(data), "--hooks", HOOKS,
        "--out", str(out), "--shard-rows", "40", "--batch-size", str(BATCH), "--device", "cpu",
        "--quiet",
    ]  # fmt: skip


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _torchrun(
    args: list[str], cwd: Path, *, script: str | None = None, check: bool = True, n: int = 2
):
    target = ["-m", "interp.cli"] if script is None else [script]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--standalone",
        *target, *args,
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env(), cwd=cwd)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def _one_process(model: Path, data: Path, out: Path, **overrides) -> Path:
    config = CacheConfig(
        model=str(model), prompts=str(data), hooks=HOOKS.split(","), out=str(out),
        shard_rows=40, batch_size=BATCH, device="cpu", quiet=True, **overrides,
    )  # fmt: skip
    return cache_activations(config)


@pytest.fixture(scope="module")
def runs(tiny_model_dir, data, tmp_path_factory):
    """``(model, one-process folder, two-process folder)``."""
    model = tiny_model_dir("llava")
    root = tmp_path_factory.mktemp("runs")
    one = _one_process(model, data, root / "one")
    _torchrun(_args(model, data, root / "two"), root)
    return model, one, root / "two"


@pytest.mark.parametrize(("n", "batch", "world"), [(7, 2, 2), (3, 2, 3), (10, 3, 4), (1, 8, 2)])
def test_rank_slices_are_whole_batches_covering_every_prompt_in_order(n, batch, world):
    slices = rank_slices(n, batch, world)
    assert [s["rank"] for s in slices] == list(range(world))
    assert slices[0]["prompts"][0] == 0 and slices[-1]["prompts"][1] == n
    assert slices[-1]["batches"][1] == -(-n // batch)
    for before, after in zip(slices, slices[1:]):
        assert before["prompts"][1] == after["prompts"][0]  # contiguous
        assert before["batches"][1] == after["batches"][0]
    for part in slices:
        first, stop = part["batches"]
        assert part["prompts"] == [min(first * batch, n), min(stop * batch, n)]  # on batch edges
    sizes = [s["batches"][1] - s["batches"][0] for s in slices]
    assert max(sizes) - min(sizes) <= 1  # balanced (a rank may have none: 3 prompts, 3 ranks)


def _assert_same_rows(one: Path, other: Path) -> None:
    a, b = ActivationStore(one), ActivationStore(other)
    assert (len(a), a.hook_names, a.d_model) == (len(b), b.hook_names, b.d_model)
    for hook in a.hook_names:
        assert torch.equal(a.load(hook), b.load(hook)), hook  # bit for bit, in prompt order
    assert a.tokens.keys() == b.tokens.keys()
    for col, values in a.tokens.items():
        assert torch.equal(values, b.tokens[col]), col
    assert (one / "prompts.jsonl").read_text() == (other / "prompts.jsonl").read_text()


def test_two_processes_write_the_one_process_rows(runs, data):
    model, one, two = runs
    _assert_same_rows(one, two)
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["complete"] and manifest["world_size"] == 2
    assert "world_size" not in json.loads((one / "manifest.json").read_text())  # layout as before
    # each rank a contiguous run of whole batches, together every prompt in order
    slices = manifest["ranks"]
    assert [s["prompts"] for s in slices] == [[0, 4], [4, N_PROMPTS]]
    assert [s["batches"] for s in slices] == [[0, 2], [2, 4]]
    assert sum(s["rows"] for s in slices) == manifest["rows"] == len(ActivationStore(one))
    files = [s["file"] for s in manifest["shards"]]
    assert files[0].startswith("ranks/r00000/") and files[-1].startswith("ranks/r00001/")
    assert len(files) == sum(s["shards"] for s in slices)
    indices = ActivationStore(two).tokens["prompt_index"]
    assert torch.equal(indices, indices.sort().values) and indices.max() == N_PROMPTS - 1
    # the SAE stage's reader sees the same rows
    hook = HOOKS.split(",")[1]
    streamed = torch.cat(list(ActivationStream(two, hook, batch_size=64, epochs=1)))
    as_rows = lambda t: sorted(map(tuple, t.tolist()))  # noqa: E731  (a multiset of rows)
    assert as_rows(streamed) == as_rows(ActivationStore(one).load(hook))
    # a complete folder is current for any number of processes: one process skips it
    before = (two / "manifest.json").stat().st_mtime_ns
    _one_process(model, data, two)
    assert (two / "manifest.json").stat().st_mtime_ns == before


def _accelerate() -> str:
    found = Path(sys.executable).with_name("accelerate")
    return str(found) if found.exists() else (shutil.which("accelerate") or "")


ACCELERATE_CPU_CHILD = {  # what `accelerate launch --cpu --num_processes 2` gives its one child
    "ACCELERATE_USE_CPU": "True",
    "ACCELERATE_MIXED_PRECISION": "no",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "29500",
}


def test_a_launch_that_would_run_alone_is_refused_before_loading(
    tiny_model_dir, data, tmp_path, monkeypatch
):
    from typer.testing import CliRunner

    from interp.cli import app

    for name, value in ACCELERATE_CPU_CHILD.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    out = tmp_path / "acts"
    result = CliRunner().invoke(app, _args(tiny_model_dir("llava"), data, out))
    assert isinstance(result.exception, VSFAError)
    message = str(result.exception)
    assert "asked for several processes" in message and "\n" not in message
    assert "torchrun --nproc_per_node N -m interp.cli cache" in message
    assert not out.exists()


@pytest.mark.slow
def test_accelerate_cpu_launch_of_two_processes_is_refused(tiny_model_dir, data, tmp_path):
    accelerate = _accelerate()
    if not accelerate:
        pytest.skip("the accelerate launcher is not installed here")
    out = tmp_path / "acts"
    cmd = [
        accelerate, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "interp.cli",
        *_args(tiny_model_dir("llava"), data, out),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    if result.returncode != 0 and "returned non-zero exit status" not in result.stderr:
        pytest.skip(f"accelerate's launcher cannot start here: {result.stderr.strip()[-300:]}")
    assert result.returncode != 0 and "returned non-zero exit status 2" in result.stderr
    refusal = [line for line in result.stderr.splitlines() if "asked for several" in line]
    assert len(refusal) == 1 and "torchrun --nproc_per_node N -m interp.cli cache" in refusal[0]
    assert "interp/" not in result.stderr  # no traceback from the workbench
    assert not out.exists() or not (out / "manifest.json").exists()


@pytest.mark.slow
def test_accelerate_multi_process_launch_runs_the_torchrun_path(runs, data, tmp_path):
    accelerate = _accelerate()
    if not accelerate:
        pytest.skip("the accelerate launcher is not installed here")
    model, one, _ = runs
    out = tmp_path / "acts"
    cmd = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "interp.cli",
        *_args(model, data, out),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "manifest.json").read_text())["world_size"] == 2
    _assert_same_rows(one, out)


@pytest.mark.slow
def test_killed_rank_resumes_to_the_same_artifacts(runs, data, tmp_path):
    model, one, two = runs
    out = tmp_path / "killed"
    script = tmp_path / "kill_rank_1.py"
    script.write_text(KILL_RANK_1)
    killed = _torchrun(_args(model, data, out), tmp_path, script=str(script), check=False)
    assert killed.returncode != 0
    top = json.loads((out / "manifest.json").read_text())
    assert not top["complete"] and top["world_size"] == 2 and top["shards"] == []
    rank1 = json.loads((out / "ranks/r00001/manifest.json").read_text())
    assert not rank1["complete"] and len(rank1["shards"]) == 1
    first = out / "ranks/r00001" / rank1["shards"][0]["file"]
    written = first.stat().st_mtime_ns
    with pytest.raises(VSFAError, match="unfinished"):
        ActivationStore(out)
    # another number of processes refuses in one line naming the folder and --overwrite
    with pytest.raises(VSFAError) as refused:
        _one_process(model, data, out)
    message = str(refused.value)
    assert "\n" not in message and str(out) in message and "--overwrite" in message
    assert "2 process" in message and not (out / "shards").exists()
    restarted = tmp_path / "restarted"
    shutil.copytree(out, restarted)

    _torchrun(_args(model, data, out), tmp_path)
    assert first.stat().st_mtime_ns == written  # rank 1 continued its slice, not restarted
    _assert_same_rows(one, out)
    reference, resumed = ActivationStore(two), ActivationStore(out)
    assert reference.manifest["shards"] == resumed.manifest["shards"]
    assert reference.manifest["ranks"] == resumed.manifest["ranks"]
    for a, b in zip(reference.shard_files(), resumed.shard_files()):
        left, right = load_file(str(a)), load_file(str(b))
        assert left.keys() == right.keys()
        assert all(torch.equal(left[key], right[key]) for key in left)

    # --overwrite starts the unfinished two-process folder again as a one-process cache
    _one_process(model, data, restarted, overwrite=True)
    assert not (restarted / "ranks").exists()
    _assert_same_rows(one, restarted)


@pytest.mark.slow
def test_more_ranks_than_batches(tiny_model_dir, data, tmp_path):
    model = tiny_model_dir("llava")
    one = _one_process(model, data, tmp_path / "one", limit=3)  # 2 batches
    _torchrun([*_args(model, data, tmp_path / "three"), "--limit", "3"], tmp_path, n=3)
    _assert_same_rows(one, tmp_path / "three")
    slices = json.loads((tmp_path / "three" / "manifest.json").read_text())["ranks"]
    assert [(s["prompts"], s["rows"], s["shards"]) for s in slices][2] == ([3, 3], 0, 0)


@pytest.mark.slow
def test_an_unfinished_one_process_cache_is_refused_by_two(
    tiny_model_dir, data, tmp_path, monkeypatch
):
    import interp.cache.run as cache_run

    model, out = tiny_model_dir("llava"), tmp_path / "acts"
    real_run, calls = cache_run.run_with_cache, {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed after the first batch's shard
        return real_run(*args, **kwargs)

    monkeypatch.setattr(cache_run, "run_with_cache", crashing)
    with pytest.raises(KeyboardInterrupt):
        _one_process(model, data, out)
    partial = (out / "manifest.json").read_text()
    assert json.loads(partial)["shards"] and not json.loads(partial)["complete"]
    result = _torchrun(_args(model, data, out), tmp_path, check=False)
    assert result.returncode != 0
    refusal = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(refusal) == 1  # rank 0 says it, once
    assert str(out) in refusal[0] and "unfinished cache of 1 process" in refusal[0]
    assert "--overwrite" in refusal[0] and "interp/" not in result.stderr
    assert (out / "manifest.json").read_text() == partial and not (out / "ranks").exists()
