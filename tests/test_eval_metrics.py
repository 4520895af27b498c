"""Metrics, intervals, judges and the table on hand-made verdicts whose answers are known."""

from __future__ import annotations

import json

import pytest

from interp.data.records import BenchmarkItem
from interp.errors import VSFAError
from interp.eval.judges import KeywordJudge, Verdict, get_judge, make_judge, parse_judgement
from interp.eval.matching import match_answer, normalise
from interp.eval.metrics import compute_metrics
from interp.eval.table import compare, render_markdown, seed_bootstrap, write_table


def item(bench, idx, kind="harmful", category="c", reference=None):
    return BenchmarkItem(bench, str(idx), category, None, "p", kind, reference=reference)


def verdict(unsafe=False, refused=False, quality=None, correct=None):
    return Verdict(refused=refused, unsafe=unsafe, quality=quality, correct=correct)


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
    # hand-made verdicts carry no outcome: the three-way rates are null, not guessed
    assert a["refusal"] is None and b["help"] is None and a["outcome_unknown"] == 4
    assert metrics["summary"]["refusal"] is None
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
    assert "i'm unable to help" in judge.phrases and "i'm sorry" not in judge.phrases
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


def test_seed_bootstrap_of_runs_without_item_values_is_clipped():
    metrics = [{"value": v, "ci_low": 0, "ci_high": 1, "n": 5} for v in (0.9, 1.0, 1.0)]
    pooled = seed_bootstrap(metrics)
    assert pooled["value"] == pytest.approx(29 / 30) and pooled["n"] == 3
    assert pooled["ci_low"] == pytest.approx(0.9) and pooled["ci_high"] == 1.0
    assert seed_bootstrap([None, None]) is None
    assert seed_bootstrap([metrics[0], None]) == metrics[0]


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


def _judged_run(folder, method, seed, unsafe_share, *, outcome=True):
    """A metrics.json from compute_metrics: 24 harmful items from 4 prompts and 8 benign
    requests; the first ``unsafe_share`` of each prompt's items comply, the rest refuse."""
    items, verdicts = [], []
    for i in range(24):
        items.append(BenchmarkItem("bench", f"h{i}", "harm", None, f"prompt {i % 4}", "harmful"))
        comply = (i // 4) / 6 < unsafe_share
        verdicts.append(
            Verdict(
                refused=not comply,
                unsafe=comply,
                outcome=("comply" if comply else "refuse") if outcome else None,
            )
        )
    for i in range(8):
        items.append(BenchmarkItem("bench", f"b{i}", "benign", None, f"ask {i}", "benign"))
        verdicts.append(
            Verdict(
                refused=False,
                unsafe=False,
                outcome=("comply" if i else "other") if outcome else None,
            )
        )
    metrics = compute_metrics(items, verdicts, n_boot=300)
    label = {"model": "m", "method": method, "seed": seed}
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"label": label, **metrics}))
    return folder


def test_three_way_rates_and_per_item_values():
    items = [BenchmarkItem("B", str(i), "c", None, "p", "harmful") for i in range(4)]
    outcomes = ["comply", "refuse", "refuse", "other"]
    verdicts = [Verdict(refused=o == "refuse", unsafe=o == "comply", outcome=o) for o in outcomes]
    items.append(BenchmarkItem("B", "r", "vqa", None, "what ?", "benign", reference="cup"))
    verdicts.append(Verdict(refused=False, unsafe=False, correct=True, outcome="other"))
    block = compute_metrics(items, verdicts, n_boot=100)["benchmarks"]["B"]
    assert block["asr"]["value"] == 0.25 and block["refusal"]["value"] == 0.5
    assert block["other"]["value"] == 0.25
    # the reference item is a question scored by capability, not a request: no help rate
    assert block["help"] is None and block["capability"]["value"] == 1.0
    assert block["outcome_unknown"] == 0
    records = {r["key"]: r for r in block["items"]}
    assert records["B/1"]["values"] == {"asr": 0.0, "refusal": 1.0, "other": 0.0}
    assert records["B/0"]["cluster"] == "p" and records["B/r"]["category"] == "vqa"


def test_compare_pools_item_values_hierarchically_and_pairs_rows(tmp_path):
    dirs = [_judged_run(tmp_path / "base", "none", None, 0.5)]
    dirs += [_judged_run(tmp_path / f"c{s}", "control", s, 0.5) for s in (0, 1)]
    dirs += [_judged_run(tmp_path / f"v{s}", "vsfa", s, share) for s, share in ((0, 0.0), (1, 0.3))]
    rows = {row["method"]: row for row in compare(dirs)}
    vsfa = rows["vsfa"]
    assert vsfa["interval"] == "hierarchical" and vsfa["seeds"] == [0, 1]
    assert vsfa["asr"]["value"] == pytest.approx((0 + 1 / 3) / 2)
    assert vsfa["refusal"]["value"] == pytest.approx(1 - vsfa["asr"]["value"])
    assert vsfa["other"]["value"] == 0.0 and vsfa["help"]["value"] == pytest.approx(7 / 8)
    assert 0.0 <= vsfa["asr"]["ci_low"] < vsfa["asr"]["value"] < vsfa["asr"]["ci_high"] <= 1.0
    drop = vsfa["differences"]["control"]["asr"]
    assert drop["value"] == pytest.approx(vsfa["asr"]["value"] - 0.5)
    assert drop["n_seeds"] == [2, 2] and drop["ci_high"] < 0  # excludes 0
    assert vsfa["differences"]["none"]["asr"]["n_seeds"] == [2, 1]
    assert rows["none"]["differences"] == {}  # control minus none is on the control row
    assert rows["control"]["differences"]["none"]["asr"]["value"] == pytest.approx(0.0)
    table = render_markdown(list(rows.values()))
    assert "| m | vsfa - control | -33.3 [" in table and "none - control" not in table
    assert "Brackets: 95% percentile bootstrap, clipped" in table and "seeds (runs)" in table


def test_compare_leaves_three_way_rates_null_for_a_judge_without_outcomes(tmp_path):
    dirs = [_judged_run(tmp_path / f"k{s}", "vsfa", s, 0.5, outcome=False) for s in (0, 1)]
    (row,) = compare(dirs)
    assert row["asr"]["value"] == 0.5 and row["refusal"] is None and row["help"] is None
    assert "| - | - |" in render_markdown([row])
