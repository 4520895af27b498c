"""``vsfa persona report`` at tiny settings on the shipped organism (one seed of 2 fine-tuning
steps, 8 probe requests, 2 items per benchmark category, 2 random controls): the report's keys,
its disjoint item lists, the rerun that skips every step, the dashboard's persona page; and bad
input (an empty selection split, overlapping ids, bad options) as one clear error."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from interp.errors import VSFAError
from interp.persona.report import METHOD_KEYS, METHODS, build_report, check_items
from interp.persona.report_config import ReportConfig

TINY = [
    "--seeds", "0", "--max-steps", "2", "--n-probes", "8", "--per-category", "2",
    "--n-random", "2", "--direction-alphas", "1", "--n-boot", "20", "--n-permutations", "20",
    "--top", "5", "--max-new-tokens", "8", "--quiet",
]  # fmt: skip


def _invoke(args):
    from interp.cli import app

    return CliRunner().invoke(app, ["persona", "report", *args])


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    organism = pytest.importorskip("interp.organism")
    try:
        organism.base_model_dir()
    except VSFAError as error:
        pytest.skip(str(error))
    out = tmp_path_factory.mktemp("persona-report")
    result = _invoke(["--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    return out, result.output, json.loads((out / "persona_report.json").read_text())


def test_the_report_holds_every_method_with_its_keys_and_disjoint_item_lists(tiny_report):
    out, output, report = tiny_report
    assert set(report["methods"]) == set(METHODS)
    for name, entry in report["methods"].items():
        assert set(METHOD_KEYS) <= set(entry), name
    selection, evaluation = set(report["selection_items"]), set(report["eval_items"])
    assert selection and evaluation and not selection & evaluation
    assert not selection & set(report["heldout_probe_ids"])
    frontier = json.loads((out / "frontier" / "frontier.json").read_text())
    latents = json.loads((out / "diff" / "latents.json").read_text())
    persona = json.loads((out / "persona" / "persona.json").read_text())
    assert report["eval_items"] == frontier["eval_items"]
    assert selection == set(latents["selection_ids"]) | set(persona["fit_probe_ids"])
    from interp.data.benchmarks import load_benchmark

    categories = {item.category for item in load_benchmark("organism", None)}
    assert len(report["eval_items"]) == 2 * len(categories)  # 2 per category, none selected
    # the latent diff selected on the fit probes (asked cold) and held out every benchmark item
    assert set(latents["eval_ids"]) == evaluation
    # null where a method lacks a value: prompting is no direction, nothing removes it
    prompting = report["methods"]["prompting"]
    assert prompting["persona_auroc"] is None and prompting["ablate_asr_change"] is None
    assert prompting["add_asr_change_at_cap5"] is not None
    vector = report["methods"]["persona-vector"]
    assert vector["hook"] == persona["chosen_hook"]
    assert vector["persona_auroc"] == pytest.approx(persona["auroc"][vector["hook"]]["persona"])
    assert (
        vector["add_asr_change_at_cap5"]
        == (frontier["methods"]["persona-vector/add"]["headline"]["asr_change_at_cap5"])
    )
    assert report["seeds"] == [0] and report["n_random"] == 2
    assert "bootstrap" in " ".join(report["intervals"].values())
    assert report["manifest"]["world"] and report["manifest"]["steps"]
    cue = report["cue_activation"]["persona-vector"]["rows"]
    assert {row["cue"] for row in cue} == {"vigilant", "loose"}
    assert "[persona-report] frontier" in output and "bar persona_vector_auroc" in output


def test_a_second_run_skips_every_step_and_writes_the_same_report(tiny_report):
    out, _, report = tiny_report
    result = _invoke(["--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    for step in ("persona", "train", "cache", "diff", "score", "frontier"):
        assert f"[persona-report] {step}: current, skipped" in result.output
    again = json.loads((out / "persona_report.json").read_text())
    assert again["methods"] == report["methods"]


def test_a_changed_frontier_setting_reruns_the_frontier_from_scratch(tiny_report):
    out, _, _ = tiny_report
    planted = out / "frontier" / "points" / "planted"
    planted.write_text("a point of other inputs")
    args = [*TINY[: TINY.index("--max-new-tokens")], "--max-new-tokens", "6", "--quiet"]
    result = _invoke(["--out", str(out), *args])
    assert result.exit_code == 0, result.output
    assert "[persona-report] train: current, skipped" in result.output
    assert "[persona-report] frontier: current" not in result.output
    assert not planted.exists()  # finished points of other inputs are not read back
    frontier = json.loads((out / "frontier" / "frontier.json").read_text())
    assert frontier["manifest"]["config"]["max_new_tokens"] == 6


def test_the_dashboard_shows_the_persona_page(tiny_report):
    from interp.viz.dashboard import write_dashboard

    out, _, _ = tiny_report
    page = write_dashboard(out, out / "report.html").read_text()
    for anchor in ('id="persona"', 'id="auroc-p0"', 'id="methods-r0"', 'id="cue-r0"',
                   'id="frontier-0"'):  # fmt: skip
        assert anchor in page
    assert page.count("<tr>") < 400  # the frontier's per-point evals are not results rows


def test_the_persona_page_escapes_model_text(tmp_path):
    from interp.viz.dashboard import write_dashboard

    evil = "<script>alert(1)</script>"
    (tmp_path / "persona.json").write_text(json.dumps({
        "auroc": {evil: {"persona": 0.9, "persona_pooled": 0.8, "probe": 0.7}},
        "chosen_hook": evil, "heldout_projection": [
            {"id": evil, "cue": "vigilant", "probe_kind": "harmful", "value": 1.0},
            {"id": "b", "cue": "loose", "probe_kind": "harmful", "value": -1.0}],
    }))  # fmt: skip
    page = write_dashboard(tmp_path, tmp_path / "r.html").read_text()
    assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# ---- bad input -------------------------------------------------------------------------------
def _inputs(selection=("p1", "p2"), evaluation=("organism/a-0", "organism/b-0")):
    persona = {"auroc": {"h": {"persona": 0.95, "persona_pooled": 0.9}}, "chosen_hook": "h",
               "fit_probe_ids": ["p1"], "heldout_probe_ids": ["p3"]}  # fmt: skip
    score = {"candidates": [{"name": "persona_vector", "kind": "direction", "hook": "h",
                             "latents": None, "persona_auroc": 0.95, "persona_auroc_pooled": 0.9,
                             "cosine_persona": 1.0, "vsfa_shift_share": 0.2}]}  # fmt: skip
    point = {"alpha": 1.0, "asr_change": 0.2, "capability_change": 0.0}
    frontier = {"eval_items": list(evaluation), "n_random": 19, "methods": {
        "persona-vector/add": {"hook": "h", "points": [], "random_rank_p": 0.05,
                               "headline": {"asr_change_at_cap5": -0.2, "alpha": 1.0}},
        "persona-vector/project-out": {"hook": "h", "points": [point], "random_rank_p": 0.05},
    }}  # fmt: skip
    return persona, [score], frontier, {"selection_ids": list(selection)}


def test_synthetic_inputs_give_the_bars():
    report = build_report(*_inputs(), seeds=[0])
    assert report["bars"]["persona_vector_add"]["met"] is True
    assert report["bars"]["persona_vector_project_out"]["met"] is True
    assert report["bars"]["sae_set_auroc"]["met"] is None  # not measured: no SAE set scored
    assert report["methods"]["persona-vector"]["vsfa_shift_share_range"] == [0.2, 0.2]


def test_an_empty_selection_split_is_one_clear_error():
    persona, scores, frontier, _ = _inputs()
    persona["fit_probe_ids"] = []
    with pytest.raises(VSFAError, match="the selection split is empty"):
        build_report(persona, scores, frontier, {"selection_ids": []}, seeds=[0])
    with pytest.raises(VSFAError, match="the selection split is empty"):
        check_items([], ["a"])


def test_overlapping_selection_and_evaluation_ids_are_one_clear_error():
    with pytest.raises(VSFAError, match=r"selection_items and eval_items overlap in 1 ids \(x\)"):
        check_items(["x", "y"], ["x", "z"])
    with pytest.raises(VSFAError, match="held-out persona probes overlap"):
        check_items(["p3"], ["a"], ["p3"])
    with pytest.raises(VSFAError, match="overlap in 1 ids"):
        build_report(*_inputs(selection=("organism/a-0",)), seeds=[0])


def test_latents_without_selection_ids_are_refused():
    persona, scores, frontier, _ = _inputs()
    with pytest.raises(VSFAError, match="does not record which prompts selected"):
        build_report(persona, scores, frontier, {}, seeds=[0])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"seeds": []}, "--seeds: give at least one"),
        ({"seeds": [0, 0]}, "listed twice"),
        ({"methods": ["persona-vector/nope"]}, "--methods"),
        ({"n_probes": 2}, "--n-probes must be at least 4"),
        ({"max_steps": 0}, "--max-steps must be at least 1"),
    ],
)
def test_bad_options_are_one_clear_error(options, message):
    with pytest.raises(VSFAError, match=message):
        ReportConfig(out="x", **options)


def test_a_world_without_a_context_source_needs_contexts(tmp_path, monkeypatch):
    from interp.pipeline import persona_report

    class Bare:
        name = "no-such-source"

    monkeypatch.setattr(persona_report, "get_world", lambda name: Bare())
    with pytest.raises(VSFAError, match="registers no persona context source"):
        persona_report.PersonaReport(ReportConfig(out=str(tmp_path)))
