"""Figure functions on small hand-made artifacts with known content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from interp.errors import VSFAError
from interp.viz import figures
from interp.viz.cards import highlighted_context_html, results_table_html, top_examples_html
from interp.viz.data import format_metric, result_rows, selected_latents

XSS = "<script>alert('pwned')</script>"


def metric(value: float, width: float = 0.05, n: int = 40) -> dict:
    return {"value": value, "ci_low": max(value - width, 0.0), "ci_high": value + width, "n": n}


def table_rows() -> list[dict]:
    """A ``table.json`` as ``interp.eval.table.compare`` writes it: three methods, two benches."""
    rows = []
    for method, asr, cs in (("none", 0.6, 0.1), ("vlguard", 0.3, 0.25), ("vsfa", 0.2, 0.45)):
        rows.append(
            {
                "model": "organism",
                "method": method,
                "seeds": [0, 1],
                "asr": metric(asr),
                "asr_by_benchmark": {"figstep": metric(asr + 0.1), "mmsafety": metric(asr - 0.1)},
                "cs": metric(cs),
                "over_refusal": metric(0.1),
                "capability": metric(0.8),
            }
        )
    return rows


def eval_metrics(method: str = "vsfa", asr: float = 0.25) -> dict:
    """An eval ``metrics.json`` (schema from the contracts)."""
    bench = {
        "n": 40,
        "skipped": 0,
        "asr": metric(asr),
        "over_refusal": None,
        "capability": None,
        "cs": metric(0.4),
        "by_category": {},
    }
    return {
        "label": {"model": "organism", "adapter": None, "method": method, "seed": 0},
        "judge": {"name": "organism", "config": {}},
        "generation": {"max_new_tokens": 16},
        "defense": None,
        "benchmarks": {"organism": bench},
        "summary": {
            "asr": metric(asr),
            "over_refusal": metric(0.05),
            "capability": metric(0.9),
            "cs": metric(0.4),
            "skipped": 0,
        },
    }


def latents_json(image: str | None) -> dict:
    """A ``latents.json`` with five latents, latent 3 selected, 1 runner-up, hostile text."""
    latents = [
        {
            "index": i,
            "base_mean": 0.1 * i,
            "tuned_mean": 0.1 * i + (0.5 if i == 3 else 0.05),
            "delta": 0.5 if i == 3 else 0.05,
            "base_freq": 0.1,
            "tuned_freq": 0.3,
            "p_value": 0.001,
            "effect_size": 1.2,
        }
        for i in range(5)
    ]
    example = {
        "source": "tuned",
        "prompt_id": "organism/h-1",
        "prompt": f"How do I use this? {XSS}",
        "token": "knife",
        "context": "tell me how the knife <b>cuts</b>",
        "token_start": 16,
        "token_end": 21,
        "image": image,
        "activation": 3.5,
    }
    detail = {
        "top_examples": [example, {**example, "source": "base", "image": None, "activation": 1.0}],
        "histogram": {"base": [0.0, 0.1, 0.2, 0.1], "tuned": [0.5, 0.9, 1.1]},
        "logit_effect": {"promoted": [["sorry", 2.0], [XSS, 1.0]], "suppressed": [["sure", -1.5]]},
    }
    return {
        "sae": "sae_checkpoints/organism",
        "hook_name": "blocks.2.hook_resid_post",
        "d_sae": 64,
        "n_prompts": 10,
        "n_tokens": 300,
        "latents": latents,
        "selected": {"rule": "largest delta", "latents": [3], "runners_up": [1]},
        "details": {"3": detail, "1": detail},
        "diff_of_means": {"norm": 1.5, "file": "diff_of_means.safetensors"},
    }


def sweep(mode: str, asrs: list[float]) -> dict:
    alphas = [0.0, 4.0, 8.0]
    return {
        "hook_name": "blocks.2.hook_resid_post",
        "mode": mode,
        "latent": 3,
        "alphas": alphas,
        "curve": [
            {
                "alpha": a,
                "asr": metric(v),
                "over_refusal": metric(0.1),
                "capability": metric(0.8),
                "cs": None,
            }
            for a, v in zip(alphas, asrs)
        ],
        "random_control": [
            {
                "alpha": a,
                "latent": latent,
                "asr": metric(0.55 + 0.01 * latent),
                "over_refusal": metric(0.1),
                "capability": metric(0.8),
            }
            for a in alphas
            for latent in (7, 9)
        ],
        "diff_of_means": [
            {"alpha": a, "asr": metric(0.5), "over_refusal": metric(0.1), "capability": metric(0.8)}
            for a in alphas
        ],
    }


def steering_json() -> dict:
    """The demo's combined steering file: add on the base model, ablate on the tuned one."""
    return {
        "latent": 3,
        "hook_name": "blocks.2.hook_resid_post",
        "sweeps": {
            "add": sweep("add", [0.6, 0.4, 0.2]),
            "ablate": sweep("ablate", [0.2, 0.4, 0.5]),
        },
    }


def sae_metrics() -> dict:
    return {
        "fvu": 0.12,
        "explained_variance": 0.88,
        "l0": 16.0,
        "dead_fraction": 0.02,
        "dense_fraction": 0.0,
        "ce_loss_increase": 0.05,
        "kl": 0.01,
        "history": [
            {"step": s, "loss": 1.0 / (s + 1), "fvu": 0.5 / (s + 1), "l0": 16} for s in range(5)
        ],
    }


def make_run(root: Path) -> Path:
    """A run folder as the demo lays it out, from the hand-made artifacts above."""
    root.mkdir(parents=True, exist_ok=True)
    image = root / "data" / "knife.png"
    image.parent.mkdir(parents=True)
    Image.new("RGB", (200, 120), (200, 30, 30)).save(image)

    def dump(rel: str, data: object) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))

    dump("results.json", {"rows": table_rows()})
    dump("eval/vsfa-seed0/metrics.json", eval_metrics())
    dump("diff/latents.json", latents_json("data/knife.png"))
    dump("steering.json", steering_json())
    dump("steer/add/steering.json", steering_json()["sweeps"]["add"])
    dump("sae/metrics.json", sae_metrics())
    return root


# ---- tests ----------------------------------------------------------------------------------


def test_format_metric_percent_and_ci():
    assert format_metric(metric(0.2377, 0.05), percent=True) == "23.8% [18.8, 28.8]"
    assert format_metric({"value": 0.44}, percent=False) == "0.44"
    assert format_metric(None, percent=True) == "\u2013"


def test_result_rows_from_each_results_file():
    rows = result_rows(table_rows())
    assert [r["method"] for r in rows] == ["none", "vlguard", "vsfa"]
    assert rows[0]["n_seeds"] == 2
    demo = result_rows({"rows": [{"name": "vsfa", "asr": metric(0.2), "n_seeds": 3}]})
    assert demo[0]["method"] == "vsfa" and demo[0]["n_seeds"] == 3
    from_metrics = result_rows(eval_metrics("vlguard", 0.3))
    assert from_metrics[0]["method"] == "vlguard"
    assert from_metrics[0]["asr_by_benchmark"]["organism"]["value"] == 0.3
    with pytest.raises(VSFAError, match="rows"):
        result_rows({"nope": 1})


def test_results_table_figure_has_every_method_and_ci():
    fig = figures.results_table(table_rows())
    (table,) = fig.data
    assert table.type == "table"
    columns = table.cells.values
    assert list(columns[1]) == ["none", "vlguard", "vsfa"]
    assert columns[3][2] == "20.0% [15.0, 25.0]"  # ASR of vsfa with its CI
    assert columns[4][2] == "0.45 [0.40, 0.50]"  # CS


def test_asr_bars_one_trace_per_method_with_asymmetric_ci():
    fig = figures.asr_bars(table_rows())
    assert [t.name for t in fig.data] == [
        "organism / none",
        "organism / vlguard",
        "organism / vsfa",
    ]
    vsfa = fig.data[2]
    assert list(vsfa.x) == ["figstep", "mmsafety", "mean"]
    assert list(vsfa.y) == pytest.approx([30.0, 10.0, 20.0])
    assert list(vsfa.error_y.array) == pytest.approx([5.0, 5.0, 5.0])
    # mmsafety ASR 0.1 with ci_low clipped at 0.05 -> minus 5 points
    assert list(vsfa.error_y.arrayminus) == pytest.approx([5.0, 5.0, 5.0])


def test_latent_scatter_labels_selected_and_runners_up():
    fig = figures.latent_scatter(latents_json(None))
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"no change", "latents", "runners-up", "selected"}
    assert list(by_name["selected"].text) == ["3"]
    assert list(by_name["selected"].y) == pytest.approx([0.8])
    assert list(by_name["runners-up"].text) == ["1"]
    assert len(by_name["latents"].x) == 3
    assert selected_latents(latents_json(None)) == [3, 1]


def test_latent_histogram_and_logit_effect():
    data = latents_json(None)
    hist = figures.latent_histogram(data, 3)
    assert [t.name for t in hist.data] == ["base (4)", "tuned (3)"]
    assert list(hist.data[1].x) == [0.5, 0.9, 1.1]
    # both sides share one set of bins spanning every value
    assert hist.data[0].xbins == hist.data[1].xbins
    assert hist.data[0].xbins.start == 0.0 and hist.data[0].xbins.end > 1.1
    logits = figures.logit_effect(data, 3)
    promoted, suppressed = logits.data
    assert list(promoted.x) == [2.0, 1.0]
    assert "<script>" not in promoted.y[1] and "&lt;script&gt;" in promoted.y[1]
    assert list(suppressed.x) == [-1.5]
    with pytest.raises(VSFAError, match="latent 4"):
        figures.latent_histogram(data, 4)


def test_steering_curves_lines_bands_and_control():
    fig = figures.steering_curves(steering_json())
    names = [t.name for t in fig.data]
    # per metric (3) and per sweep (2): CI band, curve, random band, diff of means
    assert len(fig.data) == 3 * 2 * 4
    add_curve = next(t for t in fig.data if t.name == "add latent 3" and t.xaxis == "x")
    assert list(add_curve.y) == pytest.approx([60.0, 40.0, 20.0])
    name = "add latent 3: random latents (min-max of 2)"
    band = next(t for t in fig.data if t.name == name and t.xaxis == "x")
    # band spans min..max over random latents 7 and 9 at each alpha (0.62 and 0.64 ASR)
    assert max(band.y) == pytest.approx(64.0) and min(band.y) == pytest.approx(62.0)
    # the band's edge has its sweep's colour, as its legend entry shows
    assert band.line.color == add_curve.line.color and band.line.dash == "dot"
    assert "ablate latent 3: diff of means" in names
    single = figures.steering_curves(steering_json()["sweeps"]["add"])
    assert len(single.data) == 3 * 4


def test_sae_training_curves():
    fig = figures.sae_training_curves(sae_metrics())
    assert [t.name for t in fig.data] == ["loss", "FVU", "L0"]
    assert list(fig.data[0].x) == [0, 1, 2, 3, 4]
    assert "fvu 0.12" in fig.layout.title.text


def test_highlight_and_examples_escape_everything(tmp_path):
    html = highlighted_context_html(latents_json(None)["details"]["3"]["top_examples"][0])
    assert html == "tell me how the <mark>knife</mark> &lt;b&gt;cuts&lt;/b&gt;"
    # offsets out of range: fall back to finding the token
    html = highlighted_context_html(
        {"context": "a <i>b</i>", "token": "<i>", "token_start": 99, "token_end": 100}
    )
    assert html == "a <mark>&lt;i&gt;</mark>b&lt;/i&gt;"
    image = tmp_path / "x.png"
    Image.new("RGB", (400, 400), (0, 0, 255)).save(image)
    examples = latents_json("x.png")["details"]["3"]["top_examples"]
    out = top_examples_html(examples, image_roots=[tmp_path])
    assert out.count("data:image/png;base64,") == 1  # the text-only example has no image
    assert "text only" in out
    assert XSS not in out and "&lt;script&gt;" in out
    missing = top_examples_html(latents_json("gone.png")["details"]["3"]["top_examples"])
    assert "image not found" in missing


def test_results_table_html_escapes_method_names():
    rows = table_rows()
    rows[0]["method"] = XSS
    html = results_table_html(rows)
    assert XSS not in html and "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in html
    assert html.count("<tr>") == 1 + 3 and "ASR figstep" in html  # header + one per method


def test_steered_evaluations_name_mode_alpha_and_latents():
    def steered(steer: dict) -> dict:
        metrics = eval_metrics("steer-add")
        metrics["label"] = {"method": "steer-add", "steer": steer}
        metrics["model"] = "organism/base"
        return metrics

    common = {"mode": "add", "hook": "blocks.2.hook_resid_post", "positions": "all"}
    rows = result_rows(
        [
            steered({"mode": "none", "hook": "blocks.2.hook_resid_post"}),
            steered({**common, "latent": [368, 186], "alpha": 5.5}),
            steered({**common, "latent": 7, "alpha": 2.0, "control": "random", "norm": 1.0}),
            steered({**common, "direction": "diff_of_means", "alpha": 4, "norm": 2.0}),
        ]
    )
    assert [row["method"] for row in rows] == [
        "unsteered",
        "steer add: latents 368, 186, alpha 5.5",
        "steer add: random control, latent 7, alpha 2",
        "steer add: diff of means, alpha 4",
    ]
    assert {row["model"] for row in rows} == {"organism/base"}  # the evaluated model
