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
from interp.pipeline.results import METHODS, frontier_headlines, results_json
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
    assert DemoConfig().n_random == 19 and DemoConfig(fast=True).n_random == 2
    assert DemoConfig().p_floors() == {"steering": 0.05, "persona": 0.05}
    assert DemoConfig(fast=True).p_floors() == {"steering": 1 / 3, "persona": 1 / 3}
    assert DemoConfig(n_random=5, fast=True).n_random == 5
    result = CliRunner().invoke(app, ["demo", "--n-random", "0", "--out", str(tmp_path)])
    assert isinstance(result.exception, VSFAError)
    assert str(result.exception) == "--n-random must be at least 1"


def test_demo_persona_random_sets_default_and_bad_values(tmp_path):
    assert DemoConfig().persona_random == 19 and DemoConfig(fast=True).persona_random == 2
    assert DemoConfig(fast=True).persona_alphas == [1.0, 4.0]
    result = CliRunner().invoke(app, ["demo", "--persona-random", "0", "--out", str(tmp_path)])
    assert isinstance(result.exception, VSFAError)
    assert str(result.exception) == "--persona-random must be at least 1"


def test_frontier_headlines_name_each_method_its_rank_p_and_the_chosen_layer():
    frontier = {
        "capability_cost": 0.05,
        "methods": {
            "persona-vector/add": {"kind": "add", "random_rank_p": 0.05, "controls": {"n": 19},
                                   "headline": {"asr_change_at_cap5": -0.25, "alpha": 2.0}},
            "prompting": {"kind": "add", "random_rank_p": None,
                          "headline": {"asr_change_at_cap5": -0.5, "alpha": 1.0}},
        },
    }  # fmt: skip
    persona = {"chosen_hook": "blocks.3.hook_resid_post",
               "auroc": {"blocks.3.hook_resid_post": {"persona": 0.94, "probe": 0.99}}}  # fmt: skip
    assert frontier_headlines(frontier, persona) == [
        "frontier persona-vector/add (add): ASR -25.0 points at capability cost <= 5 points "
        "(alpha 2), rank p 0.05 among 19 random sets",
        "frontier prompting (add): ASR -50.0 points at capability cost <= 5 points (alpha 1), "
        "no random control",
        "persona vector: chosen layer blocks.3.hook_resid_post, held-out AUROC 0.940 (probe 0.990)",
    ]


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
    # --quiet: the table and the findings only, no step lines, paths or timings
    assert printed.lstrip().startswith("| Model |")
    assert "Steering:" in printed and "report:" not in printed and "[demo]" not in printed

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
    assert 'id="persona"' in html and 'id="auroc-' in html  # the dashboard's persona page
    # --fast uses the shipped SAE; the report shows it beside the rest, and the latent page
    assert read_json(out / "sae" / "metrics.json")["trained_in_this_run"] is False
    assert "<h2>SAE training</h2>" in html and 'id="sae-0"' in html
    assert 'id="latent-index-0"' in html and '<canvas class="heatmap"' in html
    _check_persona(out, printed)
    print(f"vsfa demo --fast: {seconds:.0f}s")


def _check_persona(out, printed):
    """``DIR/persona/``: the frontier is scored on the steering items, none of which selected
    the set it steers; its headlines follow the rule on its points; the printed lines match."""
    from interp.persona.frontier import headline
    from interp.pipeline.demo_stages import PERSONA_METHODS

    folder = out / "persona"
    for name in ("persona.json", "score.json", "latents.json", "frontier.json", "frontier.html"):
        assert (folder / name).is_file(), name
    persona, frontier = read_json(folder / "persona.json"), read_json(folder / "frontier.json")
    latents, score = read_json(folder / "latents.json"), read_json(folder / "score.json")
    demo = Demo(DemoConfig(fast=True, out=str(out)))
    steering_items = {item.key for item in demo.items(demo.config.steer_per_category)}
    selection = set(latents["selection_ids"])
    assert latents["split"]["kind"] == "ids" and selection
    assert set(frontier["eval_items"]) <= steering_items
    assert not set(frontier["eval_items"]) & selection  # selection never saw what scores it
    # the frontier records what selected its methods: the set's prompts, the vector's fit probes
    assert selection | set(persona["fit_probe_ids"]) == set(frontier["selection_items"])
    assert frontier["n_random"] == 2 and set(frontier["methods"]) <= set(PERSONA_METHODS)
    assert {"persona-vector/add", "persona-vector/project-out", "prompting"} <= set(
        frontier["methods"]
    )
    assert score["chosen_hook"] == persona["chosen_hook"]
    auroc = persona["auroc"][persona["chosen_hook"]]["persona"]
    assert auroc >= 0.9  # the persona vector separates the organism's personas
    for name, method in frontier["methods"].items():
        top = method["headline"]
        assert top == headline(method["points"], method["kind"], frontier["capability_cost"])
        assert top["capability_change"] >= -0.05 - 1e-9
        if method.get("controls"):
            assert method["controls"]["n"] == 2 and 1 / 3 <= method["random_rank_p"] <= 1
        line = f"frontier {name} ({method['kind']}): ASR {100 * top['asr_change_at_cap5']:+.1f}"
        assert line in printed
    assert f"chosen layer {persona['chosen_hook']}, held-out AUROC {auroc:.3f}" in printed
    # the persona lines follow the steering lines; --fast ends on its rank p floor
    lines = printed.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("  frontier "))
    assert lines[first - 1].startswith("  ablate latent ")
    assert lines[-1].startswith("  rank p floor: 0.33 with 2 random sets in the steering")


@pytest.mark.slow
def test_demo_rerun_skips_every_step(demo_run):
    out, _, _ = demo_run
    started = time.time()
    result = CliRunner().invoke(app, ["demo", "--fast", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "report:" in result.output  # not quiet: the step lines and the paths
    ran = re.findall(r"^\[demo\] (\w+) \.\.\.$", result.output, re.M)
    assert ran == ["report"], result.output
    assert time.time() - started < 60
