"""``vsfa train`` and ``vsfa run exp.yaml`` end to end on a tiny model and fixture benchmarks."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from interp.cli import app
from interp.data.benchmarks.fixtures import write_figstep, write_vlguard
from interp.errors import VSFAError
from interp.models.tiny import tiny_image
from interp.pipeline.experiment import load_experiment


@pytest.fixture(autouse=True)
def _one_cpu_thread():
    """Tiny models on a shared CPU: one thread avoids oversubscription (10-50x faster here)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _images(folder, n=3):
    folder.mkdir(parents=True)
    for i in range(n):
        tiny_image(i).save(folder / f"img{i}.png")
        (folder / f"img{i}.json").write_text(
            json.dumps({"answers": {"what": f"Object {i}.", "colors": "Grey."}})
        )
    return folder


def test_train_command(tiny_model_dir, tmp_path):
    images = _images(tmp_path / "imgs")
    data = tmp_path / "vqa.jsonl"
    runner = CliRunner()
    result = runner.invoke(app, ["data", "build", "-i", str(images), "-o", str(data), "-q"])
    assert result.exit_code == 0, result.output
    assert "wrote 6 records from 3 images" in result.output
    args = [
        "train",
        "-m",
        str(tiny_model_dir("llava")),
        "-d",
        str(data),
        "-o",
        str(tmp_path / "run"),
    ]
    args += ["--max-steps", "2", "--batch-size", "2", "--lora-r", "2", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "final loss" in result.output
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").exists()


def test_run_experiment(tiny_model_dir, tmp_path):
    _images(tmp_path / "imgs")
    write_figstep(tmp_path / "FigStep")
    vlguard = write_vlguard(tmp_path / "VLGuard", unsafe=1, safe=1)
    experiment = {
        "out": "exp",
        "model": str(tiny_model_dir("llava")),
        "model_label": "tiny-llava",
        "device": "cpu",
        "seeds": [0, 1],
        "datasets": {"threat": {"images": "imgs", "questions_per_image": 1}},
        "train": {"max_steps": 1, "batch_size": 2, "lora_r": 2, "save_every": 0},
        "vlguard": {"data": str(vlguard / "test.json"), "image_root": str(vlguard / "test")},
        "methods": ["none", "adashield", "vsfa", "vlguard"],
        "eval": {
            "bench": ["figstep-tiny=FigStep"],
            "per_category": 1,
            "max_new_tokens": 2,
            "n_boot": 20,
        },
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment))
    config = load_experiment(path)
    assert config.methods[2].dataset == "threat" and config.methods[3].method == "vlguard"
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(path), "-q"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "exp"
    rows = json.loads((out / "table.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["none", "adashield", "vsfa", "vlguard"]
    assert [r["seeds"] for r in rows][2:] == [2, 2] or [r["seeds"] for r in rows][2:] == [
        [0, 1],
        [0, 1],
    ]
    assert (out / "data" / "threat" / "vqa.audit.json").exists()
    assert sorted(p.name for p in (out / "train").iterdir()) == [
        "vlguard-s0", "vlguard-s1", "vsfa-s0", "vsfa-s1",
    ]  # fmt: skip
    # Everything is current: a second run redoes nothing.
    stamps = {
        p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "table.md"
    }
    stamps = {p: t for p, t in stamps.items() if p.name != "table.json"}
    result = runner.invoke(app, ["run", str(path), "-q"])
    assert result.exit_code == 0, result.output
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_bad_experiment_files(tmp_path):
    path = tmp_path / "exp.yaml"
    base = {"out": "x", "model": "m", "eval": {"bench": ["figstep=F"]}}
    path.write_text(yaml.safe_dump({**base, "methods": ["vsfa"]}))
    with pytest.raises(VSFAError, match=r"methods\[0\]: method vsfa needs at least one entry"):
        load_experiment(path)
    path.write_text(
        yaml.safe_dump({**base, "methods": [{"name": "a", "method": "lora", "dataset": "z"}]})
    )
    with pytest.raises(VSFAError, match="dataset 'z' is not defined"):
        load_experiment(path)
    path.write_text(yaml.safe_dump({**base, "methods": ["none"], "seed": [3]}))
    with pytest.raises(VSFAError, match=r"experiment.seed: unknown key; did you mean 'seeds'"):
        load_experiment(path)
    path.write_text(yaml.safe_dump({**base, "methods": ["none"], "train": {"lora_rank": 3}}))
    with pytest.raises(VSFAError, match=r"train.lora_rank: unknown key; did you mean 'lora_r'"):
        load_experiment(path)
    path.write_text(yaml.safe_dump({**base, "methods": ["none"], "eval": {"judg": "keyword"}}))
    with pytest.raises(VSFAError, match=r"eval.judg: unknown key; did you mean 'judge'"):
        load_experiment(path)
    path.write_text(yaml.safe_dump({**base, "methods": ["vlguard"]}))
    with pytest.raises(VSFAError, match="vlguard needs"):
        load_experiment(path)


def test_world_references(tmp_path):
    from interp.pipeline.worlds import WORLDS

    world = WORLDS.get("organism")
    path = tmp_path / "exp.yaml"
    experiment = {
        "out": "x", "model": "organism", "train": "organism",
        "datasets": {"threat": {"images": "organism:threat_images"}},
        "vlguard": {"data": "organism"},
        "methods": ["vsfa", "vlguard", {"name": "lora", "method": "lora", "train": {"lr": 1}}],
        "eval": {"bench": ["organism"], "judge": "organism"},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(experiment))
    config = load_experiment(path)
    assert config.train == world.train_recipe()
    assert [m.method for m in config.methods] == [world.train_recipe().method, "vlguard", "lora"]
    assert (
        config.model == "organism" and config.datasets["threat"].images == "organism:threat_images"
    )
    assert config.methods[1].data == "organism:vlguard_train" and config.eval.bench == ["organism"]
    assert config.methods[1].image_root == "organism:vlguard_images"
    assert config.methods[2].train == {"lr": 1.0}
    path.write_text(yaml.safe_dump({**experiment, "train": "organizm"}))
    with pytest.raises(VSFAError, match="'organizm' is not a registered world"):
        load_experiment(path)
