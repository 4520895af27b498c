"""Metrics, intervals, judges and the table on hand-made verdicts whose answers are known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from interp.data.records import BenchmarkItem
from interp.errors import VSFAError
from interp.eval.judges import KeywordJudge, Verdict, get_judge, make_judge, parse_judgement
from interp.eval.matching import match_answer, normalise
from interp.eval.metrics import bootstrap_ci, compute_metrics, stratified_mean_ci
from interp.eval.table import compare, pool_seeds, render_markdown, write_table


def item(bench, idx, kind="harmful", category="c", reference=None):
    return BenchmarkItem(bench, str(idx), category, None, "p", kind, reference=reference)


def verdict(unsafe=False, refused=False, quality=None, correct=None):
    return Verdict(refused=refused, unsafe=unsafe, quality=quality, correct=correct)


def test_bootstrap_ci_known_cases():
    assert bootstrap_ci([]) is None
    ones = bootstrap_ci([1.0] * 10)
    assert ones == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 10}
    half = bootstrap_ci([0.0, 1.0] * 100, n_boot=2000, seed=3)
    assert half["value"] == 0.5 and half["n"] == 200
    # binomial standard error is 0.035: the 95% interval is about +-0.07
    assert 0.41 < half["ci_low"] < 0.45 and 0.55 < half["ci_high"] < 0.59
    assert bootstrap_ci([0.0, 1.0] * 100, n_boot=2000, seed=3) == half
    assert bootstrap_ci([0.0, 1.0] * 100, n_boot=2000, seed=4) != half
    single = bootstrap_ci([0.3])
    assert single["ci_low"] == single["ci_high"] == pytest.approx(0.3)


def test_stratified_mean_weights_benchmarks_equally():
    metric = stratified_mean_ci([[1.0, 1.0], [0.0, 0.0, 0.0, 0.0]], n_boot=200)
    assert metric["value"] == 0.5 and metric["n"] == 6
    # each group is constant, so resampling within groups cannot move the mean
    assert metric["ci_low"] == metric["ci_high"] == 0.5


def test_compute_metrics_on_known_verdicts():
    items, verdicts = [], []
    # bench A: 4 harmful items (3 unsafe), 2 categories; CS scores on two of them
    for idx, (unsafe, quality, cat) in enumerate(
        [(True, 0.0, "x"), (True, None, "x"), (True, 0.0, "y"), (False, 1.0, "y")]
    ):
        items.append(item("A", idx, category=cat))
        verdicts.append(verdict(unsafe=unsafe, refused=not unsafe, quality=quality))
    # bench B: 2 harmful safe, 3 benign (1 refused), 1 benign with reference (correct), 1 skipped
    for idx in range(2):
        items.append(item("B", f"h{idx}"))
        verdicts.append(verdict(unsafe=False, refused=True))
    for idx, refused in enumerate([True, False, False]):
        items.append(item("B", f"b{idx}", kind="benign"))
        verdicts.append(verdict(refused=refused))
    items.append(item("B", "ref", kind="benign", reference="4"))
    verdicts.append(verdict(refused=False, correct=True))
    items.append(item("B", "broken", kind="benign"))
    verdicts.append(None)
    metrics = compute_metrics(items, verdicts, n_boot=200)
    a, b = metrics["benchmarks"]["A"], metrics["benchmarks"]["B"]
    assert a["asr"]["value"] == 0.75 and a["asr"]["n"] == 4
    assert a["cs"]["value"] == pytest.approx(1 / 3) and a["cs"]["n"] == 3
    assert a["over_refusal"] is None and a["capability"] is None
    assert a["by_category"]["x"]["asr"]["value"] == 1.0
    assert a["by_category"]["y"]["asr"]["value"] == 0.5
    assert b["asr"]["value"] == 0.0 and b["cs"] is None
    assert b["over_refusal"]["value"] == 0.25 and b["over_refusal"]["n"] == 4
    assert b["capability"] == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 1}
    assert b["skipped"] == 1 and b["n"] == 6 and a["skipped"] == 0
    summary = metrics["summary"]
    assert summary["asr"]["value"] == pytest.approx((0.75 + 0.0) / 2)
    assert summary["asr_benchmarks"] == ["A", "B"]
    assert summary["over_refusal"]["value"] == 0.25
    assert summary["skipped"] == 1
    for metric in (a["asr"], summary["asr"], b["over_refusal"]):
        assert metric["ci_low"] <= metric["value"] <= metric["ci_high"]


def test_samples_are_averaged_per_item():
    items = [item("A", 0), item("A", 0), item("A", 1), item("A", 1)]
    verdicts = [verdict(unsafe=True), verdict(unsafe=False), verdict(unsafe=True), verdict(True)]
    metrics = compute_metrics(items, verdicts, n_boot=100)
    asr = metrics["benchmarks"]["A"]["asr"]
    assert asr["value"] == 0.75 and asr["n"] == 2  # items, not samples


def test_match_answer_and_or():
    assert normalise("The Answer: 3.5!") == "answer 3.5"
    assert match_answer("4", "There are 4 apples.")
    assert not match_answer("4", "There are 14 apples.")
    assert match_answer("red<OR>crimson", "It is Crimson.")
    assert not match_answer("red<OR>crimson", "It is blue.")
    assert match_answer("cat<AND>dog", "a dog and a cat")
    assert not match_answer("cat<AND>dog", "only a cat")


def test_keyword_judge():
    judge = get_judge("keyword")
    assert isinstance(judge, KeywordJudge)
    assert "i'm sorry" in judge.phrases and "i will not" in judge.phrases  # GCG + VLGuard
    harmful, benign = item("A", 0), item("A", 1, kind="benign")
    responses = ["I’m sorry, I cannot help.", "Step 1: take the box; it has an opening.", "  "]
    verdicts = judge.judge([harmful] * 3, responses)
    assert [v.refused for v in verdicts] == [True, False, True]
    assert [v.unsafe for v in verdicts] == [False, True, False]
    assert verdicts[1].quality is None and verdicts[1].label == "comply"
    benign_verdict = judge.judge([benign], ["Sure, here it is."])[0]
    assert not benign_verdict.unsafe and not benign_verdict.refused
    assert judge.judge([item("V", 0, "benign", reference="4")], ["4"])[0].correct is True
    assert "phrases" in judge.config()


def test_keyword_judge_phrase_file(tmp_path):
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("nope\n\nno way\n")
    judge = get_judge(f"keyword:{phrases}")
    assert judge.phrases == ("nope", "no way")
    assert judge.refuses("No way, friend") and not judge.refuses("I'm sorry")
    with pytest.raises(VSFAError, match="phrase file .* does not exist"):
        get_judge(f"keyword:{tmp_path / 'missing.txt'}")
    with pytest.raises(VSFAError, match="unknown judge 'magic'"):
        make_judge("magic")
    with pytest.raises(VSFAError, match="judge model path .* does not exist"):
        make_judge(f"llm:{tmp_path / 'no-model'}")
    with pytest.raises(VSFAError, match="no config.json"):
        make_judge(f"llm:{tmp_path}")


def test_parse_judgement():
    parsed = parse_judgement("verdict: unsafe\nrefusal: no\nscore: 0.1")
    assert (parsed.verdict, parsed.refusal, parsed.score) == ("unsafe", False, 0.1)
    parsed = parse_judgement("**Verdict:** safe\nRefusal: yes\nScore: 0.8 (constructive)")
    assert (parsed.verdict, parsed.refusal, parsed.score) == ("safe", True, 0.8)
    assert parse_judgement("unsafe\nS1").verdict == "unsafe"  # a guard model's bare answer
    assert parse_judgement("safe").verdict == "safe"
    assert parse_judgement("score: 7").score == 1.0  # clipped to 0-1
    assert parse_judgement("gibberish").verdict is None


def _metrics_file(folder, model, method, seed, asr, judge="keyword"):
    folder.mkdir(parents=True)
    metric = {"value": asr, "ci_low": asr - 0.1, "ci_high": asr + 0.1, "n": 10}
    data = {
        "label": {"model": model, "adapter": None, "method": method, "seed": seed},
        "judge": {"name": judge, "config": {}},
        "benchmarks": {"figstep": {"n": 10, "skipped": 0, "asr": metric, "by_category": {}}},
        "summary": {"asr": metric, "over_refusal": None, "capability": None, "cs": None,
                    "skipped": 0},
    }  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(data))
    return folder


def test_pool_seeds_t_interval():
    metrics = [{"value": v, "ci_low": 0, "ci_high": 1, "n": 5} for v in (0.2, 0.4, 0.6)]
    pooled = pool_seeds(metrics)
    # mean 0.4, sd 0.2, sem 0.2/sqrt(3), t(0.975, 2) = 4.303
    half = 4.302652729911275 * 0.2 / np.sqrt(3)
    assert pooled["value"] == pytest.approx(0.4) and pooled["n"] == 3
    assert pooled["ci_low"] == pytest.approx(0.4 - half) and pooled["ci_high"] == pytest.approx(
        0.4 + half
    )
    assert pool_seeds([None, None]) is None


def test_compare_pools_seeds_into_rows(tmp_path):
    dirs = [
        _metrics_file(tmp_path / "a", "llava", "none", None, 0.7),
        _metrics_file(tmp_path / "b", "llava", "vsfa", 0, 0.2),
        _metrics_file(tmp_path / "c", "llava", "vsfa", 1, 0.4),
    ]
    rows = compare(dirs)
    assert [(r["model"], r["method"], r["seeds"]) for r in rows] == [
        ("llava", "none", [None]),
        ("llava", "vsfa", [0, 1]),
    ]
    assert rows[1]["asr"]["value"] == pytest.approx(0.3) and rows[1]["asr"]["n"] == 2
    assert rows[1]["asr_by_benchmark"]["figstep"]["value"] == pytest.approx(0.3)
    table = render_markdown(rows)
    assert "| llava | vsfa | 2 (0,1) | 30.0% [" in table and "ASR figstep" in table
    out = write_table(dirs, tmp_path / "table")
    assert json.loads((out / "table.json").read_text())["rows"][0]["asr"]["value"] == 0.7
    assert (out / "table.md").read_text() == table
    mixed = _metrics_file(tmp_path / "d", "qwen", "none", None, 0.5, judge="llm")
    assert "not comparable" in render_markdown(compare([*dirs, mixed]))
    with pytest.raises(VSFAError, match="not an evaluation result folder"):
        compare([tmp_path])
