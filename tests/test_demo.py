"""``vsfa demo``: step skipping, results.json from real eval outputs, and the end-to-end run."""

from __future__ import annotations

import json
import re
import time

import pytest
from test_viz import eval_metrics
from typer.testing import CliRunner

from interp.artifacts import read_json
from interp.cli import app
from interp.errors import VSFAError
from interp.pipeline.demo import Demo, DemoConfig
from interp.pipeline.results import METHODS, results_json
from interp.pipeline.steps import Steps
from interp.viz.data import result_rows


def test_steps_skip_when_current_and_rerun_on_change(tmp_path):
    steps = Steps(tmp_path, "demo", echo=lambda _: None)
    calls = []

    def run() -> dict:
        calls.append(1)
        path = tmp_path / "made.txt"
        path.write_text("x")
        return {"file": str(path)}

    steps.keys["up"] = "a"
    assert steps.run("s", {"k": 1}, run, ["up"]) == {"file": str(tmp_path / "made.txt")}
    steps.run("s", {"k": 1}, run, ["up"])
    assert len(calls) == 1  # current: skipped, outputs read back from the marker
    steps.run("s", {"k": 2}, run, ["up"])
    assert len(calls) == 2  # config changed
    steps.keys["up"] = "b"
    steps.run("s", {"k": 2}, run, ["up"])
    assert len(calls) == 3  # an upstream step changed
    (tmp_path / "made.txt").unlink()
    steps.run("s", {"k": 2}, run, ["up"])
    assert len(calls) == 4  # its output is gone
    steps.force = True
    steps.run("s", {"k": 2}, run, ["up"])
    assert len(calls) == 5


def test_results_json_from_eval_table_rows(tmp_path):
    from interp.eval.table import compare

    dirs = []
    for method, seed, asr in (("none", None, 0.6), ("vsfa", 0, 0.2), ("vsfa", 1, 0.3)):
        metrics = eval_metrics(method, asr)
        metrics["label"]["seed"] = seed
        folder = tmp_path / f"{method}-{seed}"
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps(metrics))
        dirs.append(folder)
    results = results_json(compare(dirs), settings={"fast": True})
    rows = {row["method"]: row for row in results["rows"]}
    assert rows["none"]["name"] == "No defense" and rows["none"]["n_seeds"] == 1
    assert rows["vsfa"]["name"] == "VSFA" and rows["vsfa"]["n_seeds"] == 2
    assert rows["vsfa"]["asr"]["value"] == pytest.approx(0.25)  # mean over the two seeds
    assert rows["vsfa"]["asr"]["ci_low"] < 0.25 < rows["vsfa"]["asr"]["ci_high"]
    # the dashboard reads the same file
    assert [r["name"] for r in result_rows(results)] == ["No defense", "VSFA"]


def test_demo_sae_follows_the_shipped_recipe_with_overrides(tmp_path):
    from dataclasses import replace

    demo = Demo(DemoConfig(out=str(tmp_path)))
    recipe = demo.plugin.sae_recipe()
    assert demo.sae_recipe() == recipe  # the full demo trains the shipped SAE's recipe
    demo = Demo(DemoConfig(out=str(tmp_path), sae_width=96, sae_steps=5))
    assert demo.sae_recipe() == replace(recipe, width=96, steps=5)


def test_demo_runs_on_the_registered_world_and_names_an_unknown_one(tmp_path):
    from interp.pipeline.worlds import WORLDS

    assert Demo(DemoConfig(out=str(tmp_path))).plugin is WORLDS.get(WORLDS.names()[0])
    with pytest.raises(VSFAError, match="unknown world 'nowhere'"):
        Demo(DemoConfig(out=str(tmp_path), world="nowhere"))


def test_demo_random_sets_default_and_bad_values(tmp_path):
    assert DemoConfig().n_random == 8 and DemoConfig(fast=True).n_random == 2
    assert DemoConfig(n_random=5, fast=True).n_random == 5
    result = CliRunner().invoke(app, ["demo", "--n-random", "0", "--out", str(tmp_path)])
    assert isinstance(result.exception, VSFAError)
    assert str(result.exception) == "--n-random must be at least 1"


def test_demo_options_build_its_config(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr("interp.pipeline.demo.run_demo", lambda config, echo: seen.append(config))
    args = ["demo", "--fast", "--seed", "3,4", "--threads", "0", "--alphas", "0,2", "-o", "x"]
    assert CliRunner().invoke(app, args).exit_code == 0
    config = seen[-1]
    assert config.seeds == [3, 4] and config.threads is None and config.alphas == [0.0, 2.0]
    assert config.per_category == 8 and config.out == "x"  # --fast defaults where not given
    assert CliRunner().invoke(app, ["demo", "--seeds", "1"]).exit_code == 0
    assert seen[-1].seeds == [1] and seen[-1].per_category == 24
    assert CliRunner().invoke(app, ["demo", "--seed", "0", "--seed", "2"]).exit_code == 0
    assert seen[-1].seeds == [0, 2]  # --seed repeats, as before


# ---- end to end (minutes on a 2-core CPU) -----------------------------------------------------


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """``vsfa demo --fast`` once per session: (folder, printed output, seconds)."""
    import interp.organism

    try:  # --fast runs on what ships: the pretrained organism (and its SAE, else it trains one)
        interp.organism.base_model_dir()
    except (VSFAError, AttributeError) as error:
        pytest.skip(f"vsfa demo --fast needs what ships with the package: {error}")
    out = tmp_path_factory.mktemp("demo")
    started = time.time()
    result = CliRunner().invoke(app, ["demo", "--fast", "--quiet", "--out", str(out)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return out, result.output, time.time() - started


@pytest.fixture(scope="session")
def demo_dir(demo_run):
    return demo_run[0]


@pytest.mark.slow
def test_demo_fast_end_to_end(demo_run):
    out, printed, seconds = demo_run
    results = read_json(out / "results.json")
    names = [row["name"] for row in results["rows"]]
    assert sorted(names) == sorted(name for _, name in METHODS)
    for row in results["rows"]:
        asr = row["asr"]
        assert 0.0 <= asr["ci_low"] <= asr["value"] <= asr["ci_high"] <= 1.0
        assert row["n_seeds"] == 1
        for key in ("over_refusal", "capability", "cs"):
            assert key in row
    # the printed table has every row
    for method, _ in METHODS:
        assert re.search(rf"^\| organism \| {method} \|", printed, re.M), method
    assert "Steering:" in printed and "report:" in printed

    steering = read_json(out / "steering.json")
    latents = read_json(out / "diff" / "latents.json")
    from interp.organism import ORGANISM_SELECTION

    # the organism's selection (up to `select` significant latents) is steered together, as a set
    selected = latents["selected"]["latents"]
    assert 1 <= len(selected) <= ORGANISM_SELECTION.select
    assert steering["latent"] == (selected[0] if len(selected) == 1 else selected)
    for other in steering["sweeps"]["add"]["random_latents"]:
        assert (1 if isinstance(other, int) else len(other)) == len(selected)
    assert set(steering["sweeps"]) == {"add", "ablate"}
    for sweep in steering["sweeps"].values():
        assert len(sweep["curve"]) >= 2 and sweep["random_control"]
    html = (out / "report.html").read_text()
    assert 'id="results-table"' in html and "steering-0" in html
    print(f"vsfa demo --fast: {seconds:.0f}s")


@pytest.mark.slow
def test_demo_rerun_skips_every_step(demo_run):
    out, _, _ = demo_run
    started = time.time()
    result = CliRunner().invoke(app, ["demo", "--fast", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    ran = re.findall(r"^\[demo\] (\w+) \.\.\.$", result.output, re.M)
    assert ran == ["report"], result.output
    assert time.time() - started < 60
