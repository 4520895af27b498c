"""Bad input to the model layer gets one clear error naming the thing and what was expected."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from interp.cli import app
from interp.errors import UnsupportedFamilyError, VSFAError
from interp.images import open_image
from interp.models import detect_family, load_vlm


def test_missing_path(tmp_path):
    with pytest.raises(VSFAError, match="does not exist"):
        load_vlm(tmp_path / "nowhere", device="cpu")


def test_folder_without_config(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(VSFAError, match="no config.json"):
        load_vlm(tmp_path, device="cpu")


def test_unsupported_architecture_lists_supported_families(tmp_path, tiny_model_dir):
    folder = tmp_path / "gpt2"
    shutil.copytree(tiny_model_dir("llava"), folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["GPT2LMHeadModel"], model_type="gpt2")
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedFamilyError) as error:
        load_vlm(folder, device="cpu")
    for family in ("llava", "qwen2_5_vl", "qwen3_vl", "gemma3", "idefics3", "mllama"):
        assert family in str(error.value)
    assert "GPT2LMHeadModel" in str(error.value)


def test_forced_family_must_match(tiny_model_dir):
    with pytest.raises(VSFAError, match="is a llava model"):
        load_vlm(tiny_model_dir("llava"), family="gemma3", device="cpu")
    with pytest.raises(UnsupportedFamilyError, match="unknown VLM family 'phi'"):
        load_vlm(tiny_model_dir("llava"), family="phi", device="cpu")


def test_detect_family_from_model_type_alone():
    class Config:
        architectures = None
        model_type = "qwen2_5_vl"

    assert detect_family(Config()).name == "qwen2_5_vl"


def test_layer_out_of_range(tiny_vlm):
    vlm = tiny_vlm("gemma3")
    with pytest.raises(VSFAError, match="4 decoder layers"):
        vlm.hook_name(4)
    with pytest.raises(VSFAError, match="out of range"):
        vlm.hook_name(-1)


def test_image_that_is_not_an_image(tmp_path):
    fake = tmp_path / "cat.png"
    fake.write_text("not a png")
    with pytest.raises(VSFAError, match="cat.png is not a readable image"):
        open_image(fake)
    with pytest.raises(VSFAError, match="does not exist"):
        open_image(tmp_path / "dog.png")


def test_bad_device_and_dtype(tiny_model_dir):
    with pytest.raises(VSFAError, match="unknown dtype 'float8'"):
        load_vlm(tiny_model_dir("llava"), device="cpu", dtype="float8")
    with pytest.raises(VSFAError, match="unknown device"):
        load_vlm(tiny_model_dir("llava"), device="tpu")


def test_bad_adapter_path(tiny_model_dir, tmp_path):
    with pytest.raises(VSFAError, match="neither a PEFT adapter"):
        load_vlm(tiny_model_dir("llava"), device="cpu", adapter=tmp_path)


def test_cli_prints_one_line_error_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", "from interp.cli import main; main()", "info", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: model path")
    assert "Traceback" not in proc.stderr


def test_cli_info_and_generate(tiny_model_dir, tmp_path):
    from interp.models.tiny import tiny_image

    runner = CliRunner()
    result = runner.invoke(app, ["info", str(tiny_model_dir("idefics3"))])
    assert result.exit_code == 0, result.output
    assert "idefics3" in result.output and "blocks.3.hook_resid_post" in result.output
    image = tmp_path / "x.png"
    tiny_image(5).save(image)
    result = runner.invoke(
        app,
        [
            "generate",
            str(tiny_model_dir("llava")),
            "-p",
            "What?",
            "-i",
            str(image),
            "--max-new-tokens",
            "3",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) >= 1
