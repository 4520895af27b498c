"""``--device-map`` / ``--max-memory`` on the CPU: tiny models placed by accelerate over ``cpu``
maps (an explicit per-module map, and ``auto`` under a ``max_memory`` that offloads the later
decoder layers to disk) give the plain load's generations, evaluations, caches, steering runs
and LoRA adapters; bad values are one line with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from interp.artifacts import manifest_key
from interp.cli import app
from interp.errors import VSFAError
from interp.models import load_vlm
from interp.models.placement import check_placement, parse_device_map, parse_max_memory, parse_size
from interp.models.tiny import tiny_families, tiny_image

runner = CliRunner()


def offloading(model_dir: Path) -> str:
    """A ``--max-memory`` that keeps the first decoder layers on the CPU and offloads the rest
    to disk (80% of the weights fit)."""
    size = (Path(model_dir) / "model.safetensors").stat().st_size
    return f"cpu={int(size * 0.8)}B"


def explicit_cpu_map(model_dir: Path) -> str:
    """``MODULE=cpu,...`` over the modules the auto map names (one entry per module)."""
    placed = load_vlm(model_dir, device_map="auto", max_memory=offloading(model_dir)).device_map
    return ",".join(f"{module}=cpu" for module in placed)


def run(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def responses(folder: Path) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in (folder / "generations.jsonl").read_text().splitlines()]
    return [(row["id"], row["response"]) for row in rows]


def test_option_values_parse_or_name_what_was_expected(tmp_path):
    assert parse_device_map(None) is None and parse_device_map("") is None
    assert parse_device_map("auto") == "auto" and parse_device_map("sequential") == "sequential"
    assert parse_device_map("cpu") == {"": "cpu"} and parse_device_map("cuda:1") == {"": 1}
    assert parse_device_map("model.vision_tower=cpu, lm_head=disk,model.language_model=0") == {
        "model.vision_tower": "cpu", "lm_head": "disk", "model.language_model": 0,
    }  # fmt: skip
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"model": "cpu", "lm_head": "disk"}))
    assert parse_device_map(str(mapping)) == {"model": "cpu", "lm_head": "disk"}
    assert parse_max_memory("0=20GiB, cpu=200MB,cuda:1=1.5GB") == {
        0: 20 * 2**30, "cpu": 200_000_000, 1: 1_500_000_000,
    }  # fmt: skip
    assert parse_size("512") == 512 and parse_size("2KiB") == 2048
    for bad, message in [
        ("everywhere", "--device-map 'everywhere': expected auto, balanced"),
        ("lm_head=moon", "'lm_head' has device 'moon'"),
        ("lm_head", "expected auto"),
        ("model=cpu,lm_head", "'lm_head' is not KEY=VALUE"),
        (str(tmp_path / "missing.json"), "not a readable JSON file"),
    ]:
        with pytest.raises(VSFAError, match=message):
            parse_device_map(bad)
    for bad, message in [
        ("cpu:200MB", "'cpu:200MB' is not KEY=VALUE"),
        ("cpu=lots", "size 'lots' is not a positive size"),
        ("cpu=0GB", "size '0GB' is not a positive size"),
        ("disk=1GB", "'disk' cannot be capped"),
        ("gpu=1GB", "'gpu' has device 'gpu'"),
    ]:
        with pytest.raises(VSFAError, match=message):
            parse_max_memory(bad)
    with pytest.raises(VSFAError, match="--max-memory caps what --device-map auto"):
        check_placement(None, "cpu=1GB")
    with pytest.raises(VSFAError, match="--max-memory caps what --device-map auto"):
        check_placement("cpu", "cpu=1GB")


def test_bad_values_exit_2_with_one_line(tmp_path):
    cases = [
        (["eval", "-m", "x", "-o", tmp_path / "e", "-b", "mmvet", "--device-map", "auto",
          "--max-memory", "cpu=lots"], "--max-memory: size 'lots'"),
        (["cache", "--model", "x", "--prompts", "p.txt", "--hook", "blocks.0.hook_resid_post",
          "-o", tmp_path / "c", "--max-memory", "cpu=1GB"], "--max-memory caps"),
        (["train", "-m", "x", "-d", "v.jsonl", "-o", tmp_path / "t", "--method", "full",
          "--device-map", "auto"], "--device-map trains LoRA adapters only"),
        (["steer", "-m", "x", "--sae", "s", "--latent", "1", "--bench", "mmvet", "-o",
          tmp_path / "s", "--device-map", "lm_head=moon"], "'lm_head' has device 'moon'"),
    ]  # fmt: skip
    for argv, message in cases:
        result = runner.invoke(app, [str(a) for a in argv])
        assert isinstance(result.exception, VSFAError), (argv, result.output)
        assert message in str(result.exception) and "\n" not in str(result.exception)
    # the installed command: exit code 2 and one line, no traceback
    result = subprocess.run(
        [sys.executable, "-m", "interp.cli", "generate", "-m", "x", "-p", "hi", "--device-map",
         "everywhere"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: --device-map 'everywhere': expected auto, balanced, balanced_low_0, sequential, "
        "a device (cpu, cuda:N), MODULE=DEVICE,... or a .json file of {module: device}"
    ]


def test_model_errors_are_one_line(tiny_model_dir):
    model = tiny_model_dir("llava")
    with pytest.raises(VSFAError, match="names 'model.nothing_here', which is not a module"):
        load_vlm(model, device_map="model.nothing_here=cpu")
    with pytest.raises(VSFAError, match="places no module holding 'lm_head.weight'"):
        load_vlm(model, device_map="model=cpu")
    with pytest.raises(VSFAError, match="places modules on a GPU, but no CUDA GPU"):
        load_vlm(model, device_map="model=0,lm_head=0")


@pytest.mark.parametrize("family", tiny_families())
def test_offloaded_generation_and_activations_equal_the_plain_load(
    tiny_vlm, tiny_model_dir, family
):
    from interp.hooks.native import run_with_cache
    from interp.steer.interventions import add_direction

    plain = tiny_vlm(family)
    placed = load_vlm(tiny_model_dir(family), device_map="auto",
                      max_memory=offloading(tiny_model_dir(family)))  # fmt: skip
    devices = placed.device_map
    last = plain.n_layers - 1
    assert "disk" in devices.values() and "cpu" in devices.values()
    assert placed.device == torch.device("cpu")
    assert next(placed.layers[last].parameters()).device.type == "meta"  # really offloaded

    images, prompts = [tiny_image(0), None], ["What is shown here?", "Say hello."]
    expected = plain.generate(images, prompts, max_new_tokens=6)
    assert placed.generate(images, prompts, max_new_tokens=6) == expected
    hooks = ["blocks.0.hook_resid_post", f"blocks.{last}.hook_resid_mid",
             f"blocks.{last}.hook_resid_post"]  # fmt: skip
    want = run_with_cache(plain, plain.prepare(images, prompts), hooks)
    got = run_with_cache(placed, placed.prepare(images, prompts), hooks)
    for hook in hooks:
        assert torch.equal(got[hook], want[hook]), hook
    assert torch.equal(placed.unembedding(), plain.unembedding())

    # steering an offloaded layer: the vector meets the layer's output where it runs; the
    # prompt / generated split reads the KV cache of the dispatched model the same way
    direction = torch.randn(plain.d_model, generator=torch.Generator().manual_seed(0))
    for positions in ("all", "generated"):
        with add_direction(plain, f"blocks.{last}.hook_resid_post", direction, 50.0, positions):
            steered = plain.generate(images, prompts, max_new_tokens=6)
        with add_direction(placed, f"blocks.{last}.hook_resid_post", direction, 50.0, positions):
            assert placed.generate(images, prompts, max_new_tokens=6) == steered, positions
        if positions == "all":
            assert steered != expected


def test_generate_command_with_a_device_map_prints_the_plain_text(tiny_model_dir, tmp_path):
    model = tiny_model_dir("llava")
    image = tmp_path / "cat.png"
    tiny_image(1).save(image)
    base = ["generate", "-m", model, "-p", "What is this?", "-i", image, "-p", "Hi.", "-i", image,
            "--max-new-tokens", "5", "-q"]  # fmt: skip
    plain = run(*base, "--device", "cpu", "--dtype", "float32")
    assert run(*base, "--device-map", explicit_cpu_map(model)) == plain
    assert run(*base, "--device-map", "auto", "--max-memory", offloading(model)) == plain


@pytest.fixture(scope="module")
def benches(tmp_path_factory):
    from interp.data.benchmarks.fixtures import write_fixture_benchmarks

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VSFA_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield write_fixture_benchmarks(tmp_path_factory.mktemp("benches"))


def test_eval_with_a_device_map_equals_the_plain_eval(tiny_model_dir, benches, tmp_path):
    model = tiny_model_dir("llava")
    common = ["eval", "-m", model, "-b", f"vlguard={benches['vlguard']}", "-b",
              f"mmvet={benches['mmvet']}", "--per-category", "1", "--max-new-tokens", "4",
              "--n-boot", "50", "-q"]  # fmt: skip
    run(*common, "-o", tmp_path / "plain", "--device", "cpu", "--dtype", "float32")
    run(*common, "-o", tmp_path / "placed", "--device-map", "auto",
        "--max-memory", offloading(model))  # fmt: skip
    assert len(responses(tmp_path / "plain")) == 6  # 3 VLGuard subsets + 3 MM-Vet groups
    assert responses(tmp_path / "placed") == responses(tmp_path / "plain")
    metrics = [json.loads((tmp_path / f / "metrics.json").read_text())["summary"]
               for f in ("plain", "placed")]  # fmt: skip
    assert metrics[0] == metrics[1]


def _vqa(folder: Path, n: int = 6) -> Path:
    lines = []
    for i in range(n):
        tiny_image(i).save(folder / f"img{i}.png")
        answer = ["A red cube on grass.", "Two blue balls."][i % 2]
        lines.append(json.dumps({"id": f"r{i}", "image": f"img{i}.png",
                                 "question": "What is shown?", "answer": answer}))  # fmt: skip
    path = folder / "vqa.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cache_with_a_device_map_equals_the_plain_cache(tiny_model_dir, tmp_path):
    model = tiny_model_dir("llava")
    prompts = _vqa(tmp_path)
    hooks = "blocks.0.hook_resid_post,blocks.3.hook_resid_mid,blocks.3.hook_resid_post"
    common = ["cache", "--model", model, "--prompts", prompts, "--hook", hooks, "--batch-size",
              "2", "--shard-rows", "64", "--model-dtype", "float32", "-q"]  # fmt: skip
    run(*common, "-o", tmp_path / "plain", "--device", "cpu")
    run(*common, "-o", tmp_path / "placed", "--device-map", "auto", "--max-memory",
        offloading(model))  # fmt: skip
    files = sorted(p.relative_to(tmp_path / "plain") for p in
                   (tmp_path / "plain").rglob("*.safetensors"))  # fmt: skip
    assert files and files == sorted(p.relative_to(tmp_path / "placed") for p in
                                     (tmp_path / "placed").rglob("*.safetensors"))  # fmt: skip
    for name in files:
        want, got = load_file(tmp_path / "plain" / name), load_file(tmp_path / "placed" / name)
        assert want.keys() == got.keys()
        assert all(torch.equal(want[k], got[k]) for k in want), name
    manifests = [json.loads((tmp_path / f / "manifest.json").read_text())
                 for f in ("plain", "placed")]  # fmt: skip
    # placement does not decide what is cached: the same key, so either run continues the other
    assert manifest_key(manifests[0]) == manifest_key(manifests[1])


def test_steer_with_a_device_map_equals_the_plain_sweep(tiny_model_dir, benches, tmp_path):
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    model = tiny_model_dir("llava")
    d_model = load_vlm(model, device="cpu").d_model
    q, _ = torch.linalg.qr(torch.randn(d_model, 8, generator=torch.Generator().manual_seed(0)))
    cfg = StandardSAEConfig(d_in=d_model, d_sae=8,
                            metadata=SAEMetadata(hook_name="blocks.3.hook_resid_post"))  # fmt: skip
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.W_dec.copy_(q.T * 8.0)
        sae.W_enc.copy_(q / 8.0)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    sae.save_model(str(tmp_path / "sae"))
    common = ["steer", "-m", model, "--sae", tmp_path / "sae", "--latent", "2", "--alphas", "0,8",
              "--n-random", "1", "--n-boot", "50", "--bench", f"vlguard={benches['vlguard']}",
              "--per-category", "1", "--max-new-tokens", "4", "-q"]  # fmt: skip
    run(*common, "-o", tmp_path / "plain", "--device", "cpu", "--dtype", "float32")
    run(*common, "-o", tmp_path / "placed", "--device-map", "auto", "--max-memory",
        offloading(model))  # fmt: skip
    for point in ("unsteered", "latent_2/alpha_8"):
        assert responses(tmp_path / "placed" / point) == responses(tmp_path / "plain" / point)
    assert responses(tmp_path / "plain" / "latent_2/alpha_8") != responses(
        tmp_path / "plain" / "unsteered"
    )
    curves = [json.loads((tmp_path / f / "steering.json").read_text())["curve"]
              for f in ("plain", "placed")]  # fmt: skip
    assert curves[0] == curves[1]


def test_lora_training_with_a_device_map_saves_the_plain_adapter(tiny_model_dir, tmp_path):
    from interp.train import TrainConfig, train

    model = tiny_model_dir("llava")
    data = _vqa(tmp_path)

    def adapter(name: str, stop_after: int | None = None, **placement) -> dict[str, torch.Tensor]:
        config = TrainConfig(
            model=str(model), data=str(data), out=str(tmp_path / name), method="lora",
            max_steps=3, batch_size=2, lr=1e-2, lora_r=4, lora_alpha=8, lora_dropout=0.0,
            warmup_ratio=0.0, quiet=True, save_every=0, device="cpu", dtype="float32",
            threads=1, **placement,
        )  # fmt: skip
        if stop_after:  # a checkpoint, then a second call resumes from it
            train(config, stop_after=stop_after)
            assert not (tmp_path / name / "adapter").exists()
        out = train(config)
        return load_file(out / "adapter" / "adapter_model.safetensors")

    plain = adapter("plain")
    # offloaded training checkpoints each layer, so one layer's weights are loaded at a time
    offloaded = dict(device_map="auto", max_memory=offloading(model), gradient_checkpointing=True)
    explicit = explicit_cpu_map(model)
    # the first and the last modules on disk: frozen offloaded weights stay out of checkpoints
    ends_on_disk = explicit.replace("vision_tower=cpu", "vision_tower=disk")
    ends_on_disk = ends_on_disk.replace("lm_head=cpu", "lm_head=disk")
    assert ends_on_disk.count("=disk") == 2
    runs = {
        "explicit": adapter("explicit", device_map=explicit),
        "offloaded": adapter("offloaded", **offloaded),
        "resumed": adapter("resumed", stop_after=2, device_map=ends_on_disk),
    }
    assert any("layers.3" in key for key in plain)  # the offloaded layers carry adapters too
    for name, trained in runs.items():
        assert trained.keys() == plain.keys(), name
        for key in plain:
            torch.testing.assert_close(trained[key], plain[key], rtol=1e-5, atol=1e-6)
    assert any(bool(plain[k].abs().sum()) for k in plain if "lora_B" in k)  # it trained

    # the trained adapter on an offloaded model gives the plain adapter's logits
    with_plain = load_vlm(model, device="cpu", dtype="float32", adapter=tmp_path / "plain")
    with_offloaded = load_vlm(model, device_map="auto", max_memory=offloading(model),
                              adapter=tmp_path / "offloaded")  # fmt: skip
    inputs = with_plain.prepare([tiny_image(2)], ["What is shown?"])
    with torch.no_grad():
        want = with_plain.model(**inputs).logits
        got = with_offloaded.model(**inputs).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(VSFAError, match="cannot merge an adapter into weights offloaded"):
        load_vlm(model, device_map="auto", max_memory=offloading(model),
                 adapter=tmp_path / "plain", merge_adapter=True)  # fmt: skip
