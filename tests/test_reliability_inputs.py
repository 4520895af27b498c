"""Every bad input of the table below: exit code 2 and exactly one ``error:`` line, no traceback.

Each case builds its bad file (or option) in a fresh folder and runs ``vsfa`` in-process through
:func:`interp.cli.main`, as the console script does. The cases cover the weights (pickles, garbage
and truncated safetensors), data files (non-UTF-8, bad JSON, missing fields), output folders that
are files, resume with other settings, latents files, YAML, and option values out of range.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_faults import Killed, make_acts, sae_config, stop_at

from interp.cli import main

Case = Callable[[Path, dict[str, Any]], list[str]]
CASES: list[tuple[str, Case, str]] = []
HOOK = "blocks.0.hook_resid_post"
NOT_UTF8 = b"caf\xe9 au lait\n"


def case(name: str, expected: str) -> Callable[[Case], Case]:
    """Register a case: ``build(folder, env) -> argv``; ``expected`` is in the error line."""

    def register(build: Case) -> Case:
        CASES.append((name, build, expected))
        return build

    return register


@pytest.fixture(scope="module")
def env(tiny_model_dir, tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("bad-inputs")
    bench = root / "bench.jsonl"
    items = [
        {"benchmark": "toy", "id": str(i), "category": "c", "image_path": None,
         "prompt": f"question {i}", "kind": "harmful"}
        for i in range(2)
    ]  # fmt: skip
    bench.write_text("".join(json.dumps(item) + "\n" for item in items))
    vqa = root / "vqa.jsonl"
    vqa.write_text(json.dumps({"image": "x.png", "question": "q?", "answer": "a."}) + "\n")
    return {
        "model": Path(tiny_model_dir("llava")),
        "bench": f"jsonl={bench}",
        "vqa": vqa,
        "acts": make_acts(root / "acts"),
    }


def _model_copy(t: Path, env: dict[str, Any]) -> Path:
    target = t / "model"
    shutil.copytree(env["model"], target)
    return target


def _bad(t: Path, name: str, data: bytes | str) -> Path:
    path = t / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _eval(env: dict[str, Any], t: Path, *more: str, model: Path | None = None) -> list[str]:
    return ["eval", "-m", str(model or env["model"]), "-b", env["bench"], "-o", str(t / "out"),
            "--device", "cpu", "--max-new-tokens", "2", "-q", *more]  # fmt: skip


def _sae(env: dict[str, Any], t: Path, *more: str, acts: Path | None = None) -> list[str]:
    return ["sae", "train", "--acts", str(acts or env["acts"]), "-o", str(t / "sae"),
            "--width", "32", "--k", "4", "--steps", "6", "--batch-size", "64",
            "--eval-prompts", "0", "--device", "cpu", "-q", *more]  # fmt: skip


def _cache(env: dict[str, Any], t: Path, prompts: str, *more: str) -> list[str]:
    return ["cache", "--model", str(env["model"]), "--prompts", prompts, "--hooks", HOOK,
            "-o", str(t / "cache"), "--device", "cpu", "-q", *more]  # fmt: skip


def _steer(t: Path, latents: Path, env: dict[str, Any]) -> list[str]:
    return ["steer", "--model", str(env["model"]), "--sae", str(t / "sae"), "--bench",
            env["bench"], "-o", str(t / "steer"), "--latents", str(latents)]  # fmt: skip


# ---- model folders and weights -------------------------------------------------------------
case("model path missing", "does not exist")(lambda t, env: ["info", str(t / "nope")])
case("model path is a file", "is a file")(lambda t, env: ["info", str(_bad(t, "m", "x"))])


@case("model folder without config.json", "no config.json")
def _(t, env):
    (t / "empty").mkdir()
    return ["info", str(t / "empty")]


@case("config.json not JSON", "config.json")
def _(t, env):
    model = _model_copy(t, env)
    (model / "config.json").write_text("{not json")
    return ["info", str(model)]


@case("config.json of an unsupported architecture", "unsupported VLM architecture")
def _(t, env):
    model = _model_copy(t, env)
    (model / "config.json").write_text(json.dumps({"model_type": "bert"}))
    return ["info", str(model)]


@case("pickle pytorch_model.bin only", "pytorch_model.bin is a pickle")
def _(t, env):
    import torch

    model = _model_copy(t, env)
    (model / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(2)}, model / "pytorch_model.bin")
    return ["info", str(model)]


@case("garbage model.safetensors", "model.safetensors is not a readable safetensors")
def _(t, env):
    model = _model_copy(t, env)
    (model / "model.safetensors").write_bytes(b"\x00garbage" * 64)
    return ["info", str(model)]


@case("truncated model.safetensors", "model.safetensors is not a readable safetensors")
def _(t, env):
    model = _model_copy(t, env)
    data = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(data[: len(data) // 2])
    return ["info", str(model)]


@case("non-UTF-8 config.json", "config.json")
def _(t, env):
    model = _model_copy(t, env)
    (model / "config.json").write_bytes(b'{"model_type": "\xff"}')
    return ["info", str(model)]


case("adapter path missing", "adapter path")(
    lambda t, env: ["info", str(env["model"]), "--adapter", str(t / "nope")]
)


@case("adapter folder of nothing", "neither a PEFT adapter")
def _(t, env):
    (t / "adapter").mkdir()
    return ["info", str(env["model"]), "--adapter", str(t / "adapter")]


def _adapter(t: Path) -> Path:
    folder = t / "adapter"
    folder.mkdir()
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"],
              "task_type": "CAUSAL_LM"}  # fmt: skip
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


@case("pickle adapter_model.bin", "adapter_model.bin is a pickle")
def _(t, env):
    import torch

    torch.save({"w": torch.zeros(2)}, _adapter(t) / "adapter_model.bin")
    return ["info", str(env["model"]), "--adapter", str(t / "adapter")]


@case("garbage adapter_model.safetensors", "adapter_model.safetensors is not a readable")
def _(t, env):
    (_adapter(t) / "adapter_model.safetensors").write_bytes(b"nonsense" * 16)
    return ["info", str(env["model"]), "--adapter", str(t / "adapter")]


case("--family of another model", "--family")(
    lambda t, env: ["info", str(env["model"]), "--family", "qwen2_5_vl"]
)
case("--family unknown", "family")(lambda t, env: ["info", str(env["model"]), "--family", "x"])

# ---- the command line ------------------------------------------------------------------------
case("unknown command", "No such command")(lambda t, env: ["nosuch"])
case("unknown option", "No such option")(lambda t, env: ["sae", "train", "--bogus"])
case("missing required option", "Missing option")(lambda t, env: ["sae", "train"])
case("option out of range (--max-new-tokens 0)", "--max-new-tokens")(
    lambda t, env: [
        "steer",
        "--model",
        "m",
        "--sae",
        "s",
        "--bench",
        "b",
        "-o",
        "o",
        "--max-new-tokens",
        "0",
    ]  # fmt: skip
)
case("option not a number", "--batch-size")(
    lambda t, env: [
        "cache",
        "--model",
        "m",
        "--prompts",
        "p",
        "--hooks",
        HOOK,
        "-o",
        "o",
        "--batch-size",
        "many",
    ]  # fmt: skip
)
case("choice not in the list (--positions)", "--positions")(
    lambda t, env: _cache(env, t, "x.txt", "--positions", "middle")
)
case("--k 0", "--k")(lambda t, env: _sae(env, t, "--k", "0"))
case("--k larger than --width", "--k 40 is larger than --width 32")(
    lambda t, env: _sae(env, t, "--k", "40")
)
case("--steps and --tokens", "--steps or --tokens")(lambda t, env: _sae(env, t, "--tokens", "100"))
case("--device unknown", "device")(lambda t, env: _eval(env, t, "--device", "tpu"))
case("--dtype unknown", "dtype")(lambda t, env: _eval(env, t, "--dtype", "float8"))
case("--samples-per-item without --sample", "--samples-per-item")(
    lambda t, env: _eval(env, t, "--samples-per-item", "2")
)
case("--sample with --temperature 0", "--temperature")(
    lambda t, env: _eval(env, t, "--sample", "--temperature", "0")
)
case("--max-new-tokens 0 (eval)", "--max-new-tokens")(
    lambda t, env: _eval(env, t, "--max-new-tokens", "0")
)

# ---- eval inputs and output folders ----------------------------------------------------------
case("eval --out is a file", "is a file")(
    lambda t, env: [*_eval(env, t)[:-1], "-o", str(_bad(t, "out.txt", "x")), "-q"]
)
case("unknown --defense", "unknown --defense")(lambda t, env: _eval(env, t, "--defense", "pray"))
case("empty --defense file", "is empty")(
    lambda t, env: _eval(env, t, "--defense", str(_bad(t, "defense.txt", "")))
)
case("non-UTF-8 --defense file", "defense.txt")(
    lambda t, env: _eval(env, t, "--defense", str(_bad(t, "defense.txt", NOT_UTF8)))
)
case("unknown benchmark", "benchmark")(
    lambda t, env: ["eval", "-m", str(env["model"]), "-b", "nosuch=x", "-o", str(t / "o")]
)
case("benchmark file missing", "does not exist")(
    lambda t, env: [
        "eval",
        "-m",
        str(env["model"]),
        "-b",
        f"jsonl={t / 'no.jsonl'}",
        "-o",
        str(t / "o"),
    ]  # fmt: skip
)
case("non-UTF-8 benchmark file", "bench.jsonl")(
    lambda t, env: [
        "eval",
        "-m",
        str(env["model"]),
        "-b",
        "jsonl=" + str(_bad(t, "bench.jsonl", NOT_UTF8)),
        "-o",
        str(t / "o"),
    ]  # fmt: skip
)
case("benchmark line not JSON", "line 1")(
    lambda t, env: [
        "eval",
        "-m",
        str(env["model"]),
        "-b",
        f"jsonl={_bad(t, 'b.jsonl', '{x')}",
        "-o",
        str(t / "o"),
    ]  # fmt: skip
)
case("unknown judge", "judge")(lambda t, env: _eval(env, t, "--judge", "oracle"))


@case("generations.jsonl without its meta file", "without generations.meta.json")
def _(t, env):
    _bad(t, "out/generations.jsonl", '{"key": "toy/0", "sample": 0}\n')
    return _eval(env, t)


@case("non-UTF-8 generations.jsonl", "not UTF-8")
def _(t, env):
    main_args = _eval(env, t)
    _run_ok(main_args)
    (t / "out" / "manifest.json").unlink()
    (t / "out" / "generations.jsonl").write_bytes(NOT_UTF8)
    return main_args


@case("resume with other decoding settings", "changed: generation")
def _(t, env):
    _run_ok(_eval(env, t))
    (t / "out" / "manifest.json").unlink()
    return _eval(env, t, "--max-new-tokens", "3")


# ---- cache inputs ----------------------------------------------------------------------------
case("non-UTF-8 prompts .txt", "prompts.txt")(
    lambda t, env: _cache(env, t, str(_bad(t, "prompts.txt", NOT_UTF8)))
)
case("prompts file missing", "no.txt")(lambda t, env: _cache(env, t, str(t / "no.txt")))
case("hook the model lacks", "blocks.99")(
    lambda t, env: [
        *_cache(env, t, str(_bad(t, "p.txt", "hi\n"))),
        "--hooks",
        "blocks.99.hook_resid_post",
    ]  # fmt: skip
)
case("cache --out is a file", "is a file")(
    lambda t, env: [
        *_cache(env, t, str(_bad(t, "p.txt", "hi\n"))),
        "-o",
        str(_bad(t, "o.txt", "x")),
    ]  # fmt: skip
)


@case("cache into a folder of another stage", "not an activation-cache manifest")
def _(t, env):
    _bad(t, "cache/manifest.json", json.dumps({"stage": "eval"}))
    return _cache(env, t, str(_bad(t, "p.txt", "hi\n")))


@case("cache --out holding activations made differently", "made differently")
def _(t, env):
    prompts = str(_bad(t, "p.txt", "hi\n"))
    _run_ok(_cache(env, t, prompts))
    return _cache(env, t, prompts, "--positions", "decision")


# ---- SAE training inputs ---------------------------------------------------------------------
case("--acts folder missing", "not an activation folder")(
    lambda t, env: _sae(env, t, acts=t / "nope")
)
case("--acts manifest not JSON", "not valid JSON")(
    lambda t, env: _sae(env, t, acts=_bad(t, "acts/manifest.json", "{").parent)
)
case("--acts manifest of another stage", "lacks the field")(
    lambda t, env: _sae(env, t, acts=_bad(t, "acts/manifest.json", '{"stage": "eval"}').parent)
)


@case("--acts unfinished", "unfinished activation cache")
def _(t, env):
    folder = t / "acts"
    shutil.copytree(env["acts"], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    return _sae(env, t, acts=folder)


@case("--acts shard truncated", "truncated or corrupt")
def _(t, env):
    folder = t / "acts"
    shutil.copytree(env["acts"], folder)
    shard = sorted((folder / "shards").glob("shard_*"))[0]
    shard.write_bytes(shard.read_bytes()[:200])
    return _sae(env, t, acts=folder)


@case("--acts shard missing", "is missing")
def _(t, env):
    folder = t / "acts"
    shutil.copytree(env["acts"], folder)
    sorted((folder / "shards").glob("shard_*"))[0].unlink()
    return _sae(env, t, acts=folder)


case("--hook not in the activations", "has no activations for")(
    lambda t, env: _sae(env, t, "--hook", "blocks.5.hook_resid_post")
)
case("SAE --out is a file", "is a file")(
    lambda t, env: [*_sae(env, t), "-o", str(_bad(t, "sae.txt", "x"))]
)


def _stopped_sae(t: Path, env: dict[str, Any]) -> None:
    from interp.sae.train import train_sae

    config = sae_config(env["acts"], t / "sae", width=32, k=4, steps=6, batch_size=64,
                        buffer_rows=262144, checkpoint_every=2)  # fmt: skip
    with pytest.raises(Killed), stop_at(3):
        train_sae(config)


@case("SAE resume with another --width", "--width 32 there, 48 now")
def _(t, env):
    _stopped_sae(t, env)
    args = _sae(env, t, "--checkpoint-every", "2")
    args[args.index("--width") + 1] = "48"  # a repeated --width asks for several SAEs
    return args


@case("SAE resume with another --seed", "--seed 0 there, 5 now")
def _(t, env):
    _stopped_sae(t, env)
    return [*_sae(env, t, "--seed", "5"), "--checkpoint-every", "2"]


# ---- latents files ---------------------------------------------------------------------------
case("--latents with selected not an object", "'selected' is str 'nope'")(
    lambda t, env: _steer(t, _bad(t, "latents.json", '{"selected": "nope"}'), env)
)
case("--latents with latents not indices", "selected.latents")(
    lambda t, env: _steer(t, _bad(t, "latents.json", '{"selected": {"latents": ["a"]}}'), env)
)
case("--latents not JSON", "not valid JSON")(
    lambda t, env: _steer(t, _bad(t, "latents.json", "{"), env)
)
case("--latents missing", "does not exist")(lambda t, env: _steer(t, t / "none.json", env))
case("--latents selecting nothing", "selected no latent")(
    lambda t, env: _steer(t, _bad(t, "latents.json", '{"selected": {"latents": []}}'), env)
)
case("--latents not UTF-8", "latents.json")(
    lambda t, env: _steer(t, _bad(t, "latents.json", NOT_UTF8), env)
)

# ---- training data and run folders -----------------------------------------------------------
case("train --data missing", "does not exist")(
    lambda t, env: [
        "train",
        "-m",
        str(env["model"]),
        "-d",
        str(t / "no.jsonl"),
        "-o",
        str(t / "run"),
        "-q",
    ]  # fmt: skip
)
case("train --out is a file", "is a file")(
    lambda t, env: [
        "train",
        "-m",
        str(env["model"]),
        "-d",
        str(env["vqa"]),
        "-o",
        str(_bad(t, "run.txt", "x")),
        "-q",
    ]  # fmt: skip
)
case("train --method unknown", "--method")(
    lambda t, env: ["train", "-m", "m", "-d", "d", "-o", "o", "--method", "dpo"]
)
case("VQA data not UTF-8", "line 1: not UTF-8")(
    lambda t, env: ["data", "audit", str(_bad(t, "vqa.jsonl", NOT_UTF8))]
)
case("VQA line not JSON", "line 1: not valid JSON")(
    lambda t, env: ["data", "audit", str(_bad(t, "vqa.jsonl", "{oops\n"))]
)
case("VQA line not an object", "expected a JSON object")(
    lambda t, env: ["data", "audit", str(_bad(t, "vqa.jsonl", "[1, 2]\n"))]
)
case("VQA record without an answer", "'answer' is missing")(
    lambda t, env: ["data", "audit", str(_bad(t, "vqa.jsonl", '{"image": "a", "question": "q"}'))]
)
case("VQA file empty", "has no records")(
    lambda t, env: ["data", "audit", str(_bad(t, "vqa.jsonl", "\n"))]
)


def _labels(t: Path, data: bytes | str) -> str:
    return str(_bad(t, "labels.jsonl", data))


case("judge labels not UTF-8", "labels.jsonl line 1: not UTF-8")(
    lambda t, env: ["judge", "check", "--judge", "keyword", "--labels", _labels(t, NOT_UTF8)]
)
case("judge labels line not JSON", "labels.jsonl:1: not valid JSON")(
    lambda t, env: ["judge", "check", "--judge", "keyword", "--labels", _labels(t, "{oops\n")]
)
case("VQA file missing", "does not exist")(lambda t, env: ["data", "audit", str(t / "no.jsonl")])


@case("run folder of another run without --overwrite", "--overwrite")
def _(t, env):
    run = t / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"stage": "train", "config": {}}))
    return ["train", "-m", str(env["model"]), "-d", str(env["vqa"]), "-o", str(run), "-q",
            "--max-steps", "1"]  # fmt: skip


# ---- experiment YAML -------------------------------------------------------------------------
case("YAML malformed", "line")(
    lambda t, env: ["run", str(_bad(t, "exp.yaml", "model: [a, b\nout: x\n"))]
)
case("YAML not a mapping", "mapping")(lambda t, env: ["run", str(_bad(t, "exp.yaml", "- a\n"))])
case("YAML not UTF-8", "exp.yaml")(lambda t, env: ["run", str(_bad(t, "exp.yaml", NOT_UTF8))])
case("YAML missing", "does not exist")(lambda t, env: ["run", str(t / "none.yaml")])


def _run_ok(args: list[str]) -> None:
    """Run a command that must succeed (the setup of a case)."""
    old = sys.argv
    sys.argv = ["vsfa", *args]
    try:
        main()
    except SystemExit as done:
        assert not done.code, f"setup command failed: {args}"
    finally:
        sys.argv = old


@pytest.mark.parametrize(("name", "build", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line(name, build, expected, env, tmp_path, monkeypatch,
                                         capsys):  # fmt: skip
    args = build(tmp_path, env)
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["vsfa", *args])
    with pytest.raises(SystemExit) as stopped:
        main()
    err = capsys.readouterr().err
    assert stopped.value.code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert expected in errors[0], errors[0]


def test_the_table_covers_the_probed_kinds():
    assert len(CASES) >= 68
