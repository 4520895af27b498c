"""``bench/gpu_suite.py``: the real-size configs, and the ``--tiny`` run on CPU (same code)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "bench" / "gpu_suite.py"


def _suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gpu_suite", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("arch", "low", "high"), [("llava-1.5-7b", 7.0e9, 7.1e9), ("qwen2.5-vl-7b", 8.2e9, 8.35e9)]
)
def test_real_size_configs_have_the_published_parameter_counts(arch, low, high):
    suite = _suite()
    adapter, config, processor = suite.arch_config(arch, False, 1024)
    assert low < suite.parameter_count(config, adapter) < high
    assert config.text_config.vocab_size > len(processor.tokenizer) > 600  # trained merges
    text = "ka lo mi <image> ren"
    assert processor.tokenizer.decode(processor.tokenizer(text)["input_ids"]) == text


def _run_tiny(tmp_path: Path, *archs: str) -> tuple[list[str], dict]:
    out = tmp_path / "suite.json"
    cmd = [sys.executable, str(SUITE), "--tiny", "--threads", "1", "--json", str(out)]
    if archs:
        cmd += ["--archs", *archs]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines(), json.loads(out.read_text())


def _check(lines: list[str], data: dict, archs: list[str]) -> None:
    match = re.fullmatch(r"ratio SAE step (fast/\S+.*): (\d+\.\d{3})", lines[-1])
    assert match, lines[-1]
    ratio = data["sae"]["ratio_sae_step"]
    assert ratio["against"] == match.group(1)
    assert abs(ratio["ratio"] - float(match.group(2))) < 1e-3 and ratio["ratio"] > 0
    assert data["tiny"] is True and data["device"] == "cpu"
    assert list(data["architectures"]) == archs
    for numbers in data["architectures"].values():
        for key in ("plain_forward_tokens_per_s", "generate_steered_tokens_per_s",
                    "eval_tokens_per_s", "lora_tokens_per_s"):  # fmt: skip
            assert numbers[key] > 0
        assert numbers["eval_new_tokens"] > 0
        assert numbers["lora_trainable_parameters"] > 0
        assert any(k.startswith("cache_last_layer_3") for k in numbers)
    assert data["sae"]["sae_fast_tokens_per_s"] > 0


def test_tiny_run_prints_the_ratio_last_and_writes_the_json(tmp_path):
    lines, data = _run_tiny(tmp_path)
    _check(lines, data, ["llava-1.5-7b", "qwen2.5-vl-7b"])
    assert data["wall_s"] < 120


def test_gpu_check_script_writes_the_suite_numbers_and_the_skip_reasons(tmp_path):
    out = tmp_path / "check" / "gpu_check.txt"
    script = ROOT / "scripts" / "gpu_check.sh"
    env = dict(os.environ, PYTHON=sys.executable, VSFA_GPU_TEST_DEVICE="cuda")
    env.pop("GPU_CHECK_TIMEOUT", None)
    result = subprocess.run(
        ["bash", str(script), "--tiny", str(out)], capture_output=True, text=True, timeout=600,
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    text = out.read_text()
    assert not (tmp_path / "check" / "gpu_check.txt.partial").exists()
    lines = text.splitlines()
    ratio = [line for line in lines if line.startswith("ratio SAE step ")]
    assert len(ratio) == 1 and "suite exit status: 0" in lines
    assert lines[lines.index("suite exit status: 0") - 1] == ratio[0]
    data = json.loads((tmp_path / "check" / "gpu_check.json").read_text())
    assert f"{data['sae']['ratio_sae_step']['ratio']:.3f}" in ratio[0]
    if not torch.cuda.is_available():
        assert "no CUDA GPU on this machine" in text and "8 skipped" in text
    assert "tests exit status: 0" in lines


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "per_image"), [("llava-1.5-7b", 576), ("qwen2.5-vl-7b", 256)])
def test_real_widths_read_real_size_images_in_bf16(arch, per_image, monkeypatch):
    """The real configs at full width, cut to one text layer and two vision layers: the
    processor's image tokens are what the model expects and a bf16 forward is finite."""
    import dataclasses

    suite = _suite()
    real = suite.ARCHS[arch]
    text = dict(real.text, num_hidden_layers=1)
    if "layer_types" in text:
        text["layer_types"] = text["layer_types"][:1]
    vision = dict(real.vision)
    vision["depth" if "depth" in vision else "num_hidden_layers"] = 2
    cut = dataclasses.replace(real, text=text, vision=vision)
    monkeypatch.setitem(suite.ARCHS, arch, cut)
    vlm = suite.build_vlm(arch, False, 1024, torch.device("cpu"), torch.bfloat16)
    inputs = vlm.prepare(suite.images(2, real.image_size), ["Describe it.", "What is this?"])
    ids = inputs["input_ids"]
    assert sum(int((ids == t).sum()) for t in vlm.image_token_ids()) == 2 * per_image
    with torch.no_grad():
        logits = vlm.model(**inputs).logits
    assert vlm.d_model == real.text["hidden_size"]
    assert logits.shape[-1] == real.text["vocab_size"] and torch.isfinite(logits).all()
