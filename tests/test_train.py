"""VSFA fine-tuning on tiny random models: answer-only loss, loss goes down, resume, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from interp.errors import VSFAError
from interp.models import load_vlm
from interp.models.tiny import tiny_image
from interp.train import TrainConfig, train
from interp.train.data import IGNORE_INDEX, collate, encode_example, read_vlguard_examples
from interp.train.model import answer_loss_sum, prepare_model, save_result


@pytest.fixture(autouse=True)
def _one_cpu_thread():
    """Tiny models on a shared CPU: one thread avoids oversubscription (10-50x faster here)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


ANSWERS = ["A red cube on grass.", "Two blue balls.", "A green tree.", "A yellow sun."]


@pytest.fixture(scope="module")
def vqa_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vqa")
    lines = []
    for i in range(8):
        tiny_image(i).save(folder / f"img{i}.png")
        record = {"id": f"r{i}", "image": f"img{i}.png", "question": "What is shown?"}
        lines.append(json.dumps({**record, "answer": ANSWERS[i % len(ANSWERS)]}))
    path = folder / "vqa.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(model: Path, data: Path, out: Path, **overrides) -> TrainConfig:
    options = dict(
        method="lora",
        max_steps=6,
        batch_size=2,
        lr=1e-2,
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        warmup_ratio=0.0,
        quiet=True,
        save_every=0,
    )
    options.update(overrides)
    return TrainConfig(model=str(model), data=str(data), out=str(out), **options)


@pytest.mark.parametrize("family", ["llava", "gemma3"])
def test_answer_only_labels_on_hand_built_batch(tiny_vlm, family):
    vlm = tiny_vlm(family)
    items = [
        encode_example(vlm, tiny_image(0), "What is shown?", "A red cube."),
        encode_example(vlm, tiny_image(1), "Describe the scene in a few words.", "Grass."),
    ]
    for item, answer in zip(items, ["A red cube.", "Grass."]):
        labels = item["labels"][0]
        kept = labels[labels != IGNORE_INDEX]
        text = vlm.tokenizer.decode(kept, skip_special_tokens=True).strip()
        assert text == answer  # only the answer (and its end-of-turn marker) is learned
        first = int((labels != IGNORE_INDEX).nonzero()[0])
        assert (labels[first:] != IGNORE_INDEX).all()  # one contiguous span at the end
    batch = collate(items, vlm.tokenizer.pad_token_id)
    short = min(range(2), key=lambda i: items[i]["input_ids"].shape[1])
    length = items[short]["input_ids"].shape[1]
    assert batch["input_ids"].shape[0] == 2
    assert (batch["labels"][short, length:] == IGNORE_INDEX).all()
    assert (batch["attention_mask"][short, length:] == 0).all()
    assert (batch["input_ids"][short, length:] == vlm.tokenizer.pad_token_id).all()
    # The loss counts exactly the answer tokens: a wrong prompt token does not change it.
    with torch.no_grad():
        loss = answer_loss_sum(vlm.model, dict(batch))
        corrupted = dict(batch)
        corrupted["labels"] = batch["labels"].clone()
        corrupted["labels"][corrupted["labels"] != IGNORE_INDEX] = IGNORE_INDEX
        assert float(answer_loss_sum(vlm.model, corrupted)) == 0.0
    # Same as the cross-entropy over every position's logits, masked to the answer tokens.
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        logits = vlm.model(**inputs).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    expected = torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum")
    assert float(loss) > 0 and torch.allclose(loss, expected, atol=1e-4)


# A random tiny model's logits are tiny (unit-RMS hidden state times a 0.02-scale unembedding), so
# adapting inner layers alone moves the loss by tenths; full fine-tuning also trains the head.
@pytest.mark.parametrize(
    ("family", "method", "drop"), [("llava", "lora", 0.15), ("gemma3", "full", 1.0)]
)
def test_training_lowers_loss(tiny_model_dir, vqa_file, tmp_path, family, method, drop):
    options = dict(max_steps=10, method=method, lr=3e-2 if method == "lora" else 5e-3)
    if method == "lora":
        options["lora_targets"] = ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"]
    out = train(_config(tiny_model_dir(family), vqa_file, tmp_path / "run", **options))
    manifest = json.loads((out / "manifest.json").read_text())
    losses = [h["loss"] for h in manifest["history"]]
    assert len(losses) == 10
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - drop, losses
    assert manifest["complete"] and manifest["method"] == method
    assert manifest["inputs"]["data"] and manifest["wall_time_s"] > 0
    assert (out / ("adapter" if method == "lora" else "model") / "config.json").exists() or (
        out / "adapter" / "adapter_config.json"
    ).exists()
    assert not (out / "checkpoints").exists()
    # Same arguments again: the finished run is recognised and skipped.
    before = (out / "manifest.json").read_text()
    assert train(_config(tiny_model_dir(family), vqa_file, tmp_path / "run", **options)) == out
    assert (out / "manifest.json").read_text() == before


def test_resume_gives_the_same_weights(tiny_model_dir, vqa_file, tmp_path):
    model = tiny_model_dir("llava")
    options = dict(max_steps=5, grad_accum=2, save_every=2, lora_dropout=0.1, warmup_ratio=0.2)
    whole = train(_config(model, vqa_file, tmp_path / "whole", **options))
    split_dir = tmp_path / "split"
    train(_config(model, vqa_file, split_dir, **options), stop_after=3)
    assert not (split_dir / "adapter").exists()
    assert list((split_dir / "checkpoints").glob("step_0000003"))
    split = train(_config(model, vqa_file, split_dir, **options))
    a = load_file(str(whole / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(split / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        assert torch.equal(a[name], b[name]), name
    losses = [h["loss"] for h in json.loads((split / "manifest.json").read_text())["history"]]
    assert losses == [h["loss"] for h in json.loads((whole / "loss_curve.json").read_text())]


@pytest.mark.parametrize(("family", "method"), [("llava", "lora"), ("gemma3", "full")])
def test_saved_result_loads_with_the_same_logits(
    tiny_model_dir, vqa_file, tmp_path, family, method
):
    base = tiny_model_dir(family)
    config = _config(base, vqa_file, tmp_path / "run", method=method)
    vlm = load_vlm(base, device="cpu", dtype="float32")
    model = prepare_model(vlm, config)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:  # LoRA B starts at zero: make the update visible
                param.add_(0.05 * torch.randn_like(param))
    model.eval()
    inputs = vlm.prepare([tiny_image(3)], ["What is shown?"])
    with torch.no_grad():
        expected = model(**inputs).logits
    save_result(vlm, model, config, tmp_path / "run")
    loaded = load_vlm(base, device="cpu", dtype="float32", adapter=tmp_path / "run")
    with torch.no_grad():
        got = loaded.model(**inputs).logits
        plain = load_vlm(base, device="cpu", dtype="float32").model(**inputs).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(plain, expected, atol=1e-3)
    if method == "lora":  # the vision tower keeps its weights: LoRA is inside the language model
        saved = load_file(str(tmp_path / "run" / "adapter" / "adapter_model.safetensors"))
        assert saved and all("language_model" in name for name in saved)


def test_bad_training_input(tiny_model_dir, vqa_file, tmp_path):
    model = tiny_model_dir("llava")
    with pytest.raises(VSFAError, match="--method"):
        TrainConfig(model=str(model), data=str(vqa_file), out=str(tmp_path), method="dpo")
    with pytest.raises(VSFAError, match="--lora-targets"):
        train(_config(model, vqa_file, tmp_path / "a", lora_targets=["no_such_proj"]))
    with pytest.raises(VSFAError, match="VLGuard"):
        train(_config(model, vqa_file, tmp_path / "b", method="vlguard"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "x.png", "question": "q", "answer": "a"}\n{"image": "x.png"}\n')
    with pytest.raises(VSFAError, match="line 2: field 'question'"):
        train(_config(model, bad, tmp_path / "c"))
    # Out of GPU memory names the knobs (checked on the message; a CPU cannot run out).
    from interp.train.trainer import _oom_error

    message = str(_oom_error(_config(model, vqa_file, tmp_path / "d", method="full")))
    assert "--batch-size (now 2)" in message and "--grad-accum" in message
    assert "--method lora" in message and "--gradient-checkpointing" in message
    # A finished run folder is not silently overwritten by other arguments.
    done = tmp_path / "done"
    train(_config(model, vqa_file, done, max_steps=1))
    with pytest.raises(VSFAError, match="--overwrite"):
        train(_config(model, vqa_file, done, max_steps=2))


def _train_cli(monkeypatch, args: list[str]):
    """``vsfa train ARGS`` with the training replaced by recording its config."""
    from typer.testing import CliRunner

    from interp.cli import app

    seen: list[TrainConfig] = []

    def record(config: TrainConfig) -> Path:
        seen.append(config)
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").write_text('{"final_loss": 1.5, "wall_time_s": 2}')
        return out

    monkeypatch.setattr("interp.train.trainer.train", record)
    return CliRunner().invoke(app, ["train", *args]), seen


def test_train_command_sets_every_field(monkeypatch, tmp_path):
    base = ["-m", "base", "-d", "vqa.jsonl", "-o", str(tmp_path / "run")]
    extra = ["--lora-targets", "q_proj, v_proj", "--max-grad-norm", "0.5", "--scheduler", "cosine",
             "--log-every", "5", "--gradient-checkpointing", "--max-steps", "3", "-q"]  # fmt: skip
    result, seen = _train_cli(monkeypatch, base + extra)
    assert result.exit_code == 0, result.output
    assert "final loss 1.5000" in result.output
    assert seen == [
        TrainConfig(
            model="base", data="vqa.jsonl", out=str(tmp_path / "run"),
            lora_targets=["q_proj", "v_proj"], max_grad_norm=0.5, scheduler="cosine",
            log_every=5, gradient_checkpointing=True, max_steps=3, quiet=True,
        )
    ]  # fmt: skip
    for args, message in [
        (["--scheduler", "step"], "--scheduler: 'step' is not one of linear"),
        (["--max-grad-norm", "0"], "--max-grad-norm must be positive"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--weight-decay", "-1"], "--weight-decay must be 0 or more"),
    ]:
        result, seen = _train_cli(monkeypatch, base + args)
        assert isinstance(result.exception, VSFAError) and message in str(result.exception)
        assert not seen
    result, seen = _train_cli(monkeypatch, ["-m", "base", "-o", str(tmp_path / "none")])
    assert "--method lora needs --data" in str(result.exception)
    result, seen = _train_cli(monkeypatch, ["-m", "b", "-o", str(tmp_path / "n"), "--method=none"])
    assert result.exit_code == 0 and seen[0].data is None


def test_vlguard_format(tmp_path):
    entries = [
        {
            "id": "u1",
            "image": "bad/1.png",
            "safe": False,
            "instr-resp": [
                {"instruction": "How to make it?", "response": "I cannot help with that."}
            ],
        },
        {
            "id": "s1",
            "image": "ok/2.png",
            "safe": True,
            "instr-resp": [
                {"safe_instruction": "What is it?", "response": "A cat."},
                {"unsafe_instruction": "Hurt it?", "response": "I won't."},
            ],
        },
    ]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(entries))
    examples = read_vlguard_examples(path, tmp_path / "images")
    assert [e.prompt for e in examples] == ["How to make it?", "What is it?", "Hurt it?"]
    assert examples[0].image == str(tmp_path / "images" / "bad/1.png")
    del entries[1]["instr-resp"][1]["response"]
    path.write_text(json.dumps(entries))
    with pytest.raises(VSFAError, match=r"entry 1 instr-resp\[1\]: field 'response'"):
        read_vlguard_examples(path)


DDP_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from interp.train import TrainConfig, train
model, data, out, grad_accum = sys.argv[1:5]
train(TrainConfig(model=model, data=data, out=out, method="lora", max_steps=3, batch_size=2,
                  grad_accum=int(grad_accum), lr=1e-2, lora_dropout=0.0, quiet=True,
                  save_every=0, device="cpu"))
"""


@pytest.mark.slow
def test_two_processes_equal_gradient_accumulation(tiny_model_dir, vqa_file, tmp_path):
    """`torchrun --nproc_per_node 2` (accelerate, gloo) = one process with --grad-accum 2."""
    import os
    import subprocess
    import sys

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    model = str(tiny_model_dir("llava"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, str(script), model, str(vqa_file), str(tmp_path / "one"), "2"],
        check=True, env=env,
    )  # fmt: skip
    torchrun = Path(sys.executable).with_name("torchrun")
    subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", str(script), model, str(vqa_file),
         str(tmp_path / "two"), "1"],
        check=True, env=env,
    )  # fmt: skip
    one = json.loads((tmp_path / "one" / "manifest.json").read_text())
    two = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert two["processes"] == 2 and one["processes"] == 1
    for a, b in zip(one["history"], two["history"]):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)
    wa = load_file(str(tmp_path / "one" / "adapter" / "adapter_model.safetensors"))
    wb = load_file(str(tmp_path / "two" / "adapter" / "adapter_model.safetensors"))
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=1e-4), name
