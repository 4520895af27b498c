"""``vsfa eval`` on a tiny random model over fixture benchmark folders, then ``vsfa compare``."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from interp.cli import app
from interp.data.benchmarks.fixtures import write_fixture_benchmarks
from interp.errors import VSFAError

runner = CliRunner()


@pytest.fixture(scope="module")
def benches(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VSFA_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield write_fixture_benchmarks(tmp_path_factory.mktemp("benches"))


def run(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def test_eval_and_compare_produce_the_table(tiny_model_dir, benches, tmp_path):
    model = tiny_model_dir("llava")
    common = [
        "eval", "--model", model, "--bench", f"vlguard={benches['vlguard']}",
        "--bench", f"mmvet={benches['mmvet']}", "--bench", f"mossbench={benches['mossbench']}",
        "--per-category", "1", "--max-new-tokens", "2", "--device", "cpu", "--quiet",
        "--n-boot", "100",
    ]  # fmt: skip
    out = run(*common, "--out", tmp_path / "base", "--model-label", "tiny-llava").output
    assert "asr" in out and "over_refusal" in out
    run(*common, "--out", tmp_path / "shield", "--model-label", "tiny-llava",
        "--defense", "adashield", "--seed", "3")  # fmt: skip
    metrics = json.loads((tmp_path / "base" / "metrics.json").read_text())
    assert metrics["label"] == {"model": "tiny-llava", "adapter": None, "method": "none",
                                "seed": None}  # fmt: skip
    assert metrics["judge"]["name"] == "keyword" and metrics["defense"] is None
    # 1 per category: vlguard 3 subsets, mm-vet 3 capability groups, MOSSBench 3 types
    assert {b: m["n"] for b, m in metrics["benchmarks"].items()} == {
        "vlguard": 3, "mmvet": 3, "mossbench": 3,
    }  # fmt: skip
    assert metrics["summary"]["asr"]["n"] == 2 and metrics["summary"]["asr_benchmarks"] == [
        "vlguard"
    ]
    assert metrics["summary"]["capability"]["n"] == 3
    assert set(metrics["benchmarks"]["vlguard"]["by_category"]) == {
        "unsafes", "safe_unsafes", "safe_safes",
    }  # fmt: skip
    lines = (tmp_path / "base" / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 9

    # an identical rerun finds current results and does not redo them
    stamp = (tmp_path / "base" / "metrics.json").stat().st_mtime_ns
    run(*common, "--out", tmp_path / "base", "--model-label", "tiny-llava")
    assert (tmp_path / "base" / "metrics.json").stat().st_mtime_ns == stamp

    table = run("compare", tmp_path / "base", tmp_path / "shield", "--out", tmp_path / "t").output
    assert "| tiny-llava | none |" in table and "| tiny-llava | adashield | 1 (3) |" in table
    assert "ASR vlguard" in table and "Judge: keyword" in table
    rows = json.loads((tmp_path / "t" / "table.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["none", "adashield"]
    assert (tmp_path / "t" / "table.md").read_text() == table

    # with two judges, compare re-judges the stored replies and reports Cohen's kappa
    agreed = run("compare", tmp_path / "base", tmp_path / "shield", "--out", tmp_path / "t2",
                 "--judges", "keyword,keyword:gcg-vlguard", "--n-boot", "50").output  # fmt: skip
    assert agreed.startswith(table) and "judge agreement keyword vs keyword" in agreed
    assert "outcome" in agreed and "attack success" in agreed
    report = json.loads((tmp_path / "t2" / "agreement.json").read_text())
    assert report["pooled"]["outcome"]["n"] == 18 and report["pooled"]["attack_success"]["n"] == 4


def test_eval_user_errors(tiny_model_dir, benches, tmp_path):
    model = tiny_model_dir("llava")
    base = ["eval", "--model", str(model), "--out", str(tmp_path / "x"), "--quiet"]
    cases = [
        (["--bench", f"mmvet={benches['vlguard']}"], "mmvet folder .* not in the expected layout"),
        (["--bench", f"nope={benches['vlguard']}"], "unknown benchmark 'nope'"),
        (["--bench", f"mmvet={benches['mmvet']}", "--judge", f"llm:{tmp_path}/none"],
         "judge model path .* does not exist"),
        (["--bench", f"mmvet={benches['mmvet']}", "--defense", "magic"], "unknown --defense"),
        (["--bench", f"mmvet={benches['mmvet']}", "--bench", f"mmvet={benches['mmvet']}"],
         "repeats items"),
    ]  # fmt: skip
    for extra, message in cases:
        result = runner.invoke(app, base + extra)
        assert isinstance(result.exception, VSFAError), result.output
        assert re.search(message, str(result.exception)), message


def test_benchmarks_commands(benches, tmp_path):
    listed = run("benchmarks", "list").output
    for name in ("mmsafety", "figstep", "figstep-tiny", "spavl", "vlguard", "mossbench", "mmvet"):
        assert f"\n{name} " in f"\n{listed}"
    checked = run("benchmarks", "check", f"spavl={benches['spavl']}").output
    assert "spavl: 8 items (harmful 4, benign 4; 8 with images)" in checked
    written = run("benchmarks", "fixtures", "--out", tmp_path / "fx").output
    assert f"--bench mmvet={tmp_path / 'fx' / 'mm-vet'}" in written


def test_every_eval_option_comes_from_the_config_and_reaches_generation_and_judge(
    tmp_path, monkeypatch
):
    from dataclasses import fields

    import interp.eval.judges as judges
    from interp.eval.config import EvalConfig
    from interp.eval.generation import GenerationConfig
    from interp.options import field_docs, option_name

    shown = runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "400"}).output
    for name, doc in field_docs(EvalConfig).items():
        assert option_name(name) in shown and doc[:40] in shown, name
    assert {f.name for f in fields(EvalConfig)} == set(field_docs(EvalConfig))
    # defaults agree with the library's, and every decoding field is set from its option
    assert EvalConfig(model="m", out="o").generation() == GenerationConfig()
    generation = EvalConfig(
        model="m", out="o", max_new_tokens=5, batch_size=3, sample=True, temperature=0.5,
        top_p=0.9, seed=4, samples_per_item=2,
    ).generation()  # fmt: skip
    assert generation == GenerationConfig(5, 3, True, 0.5, 0.9, 4, 2)
    # every LLM-judge field is set from an eval option
    seen = []
    monkeypatch.setattr(judges, "LLMJudge", lambda config: seen.append(config) or config)
    template = tmp_path / "t.txt"
    template.write_text("{response}?")
    EvalConfig(
        model="m", out="o", judge="llm:/judge", judge_template=str(template),
        judge_max_new_tokens=7, judge_use_image=False, batch_size=3, device="cpu",
        dtype="float32", quiet=True,
    ).make_judge()  # fmt: skip
    assert seen == [
        judges.LLMJudgeConfig("/judge", "{response}?", 7, 3, "cpu", "float32", False, True)
    ]
    with pytest.raises(VSFAError, match="--per-category must be at least 1"):
        EvalConfig(model="m", out="o", per_category=0)
