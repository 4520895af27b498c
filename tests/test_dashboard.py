"""The standalone HTML dashboard: discovery, escaping, offline, and a headless Chromium render."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_viz import make_run
from typer.testing import CliRunner

from interp.cli import app
from interp.errors import VSFAError
from interp.viz.dashboard import collect_run, write_dashboard

# Would mark the page if it ever ran: the test checks the rendered DOM for the mark.
HOSTILE = "<script>document.documentElement.setAttribute('data-pwned','1')</script>"


def hostile_run(root: Path) -> Path:
    """The hand-made run with hostile text in every place model or dataset text reaches."""
    make_run(root)
    latents_path = root / "diff" / "latents.json"
    latents = json.loads(latents_path.read_text())
    latents["hook_name"] = HOSTILE
    latents["sae"] = HOSTILE
    for detail in latents["details"].values():
        for example in detail["top_examples"]:
            example["prompt"] = f"Explain {HOSTILE} please"
            example["context"] = f"a {HOSTILE} b"
            example["token"] = HOSTILE
            example["token_start"] = 2
            example["token_end"] = 2 + len(HOSTILE)
            example["prompt_id"] = HOSTILE
        detail["logit_effect"]["promoted"].append([HOSTILE, 0.5])
    latents_path.write_text(json.dumps(latents))
    results_path = root / "results.json"
    results = json.loads(results_path.read_text())
    results["rows"][0]["method"] = HOSTILE
    results["rows"][0]["model"] = HOSTILE
    results_path.write_text(json.dumps(results))
    return root


N_CARDS = 8


def researcher_run(root: Path) -> Path:
    """The hostile run, with what the latent page draws: eight detailed latents (more than the
    cards shown open), image patches, whole-context activations with hostile tokens, quantile
    bins, decoder neighbours, template positions, the density histogram and a persona score."""
    hostile_run(root)
    path = root / "diff" / "latents.json"
    latents = json.loads(path.read_text())
    template = latents["details"]["3"]
    for index in range(N_CARDS):
        detail = json.loads(json.dumps(template))
        for example in detail["top_examples"]:
            if example["image"]:
                example["patches"] = [0.0, 1.5, 3.5, 0.0, 0.0, 2.0]
                example["grid"] = [2, 3]
            example["tokens"] = [["user", 0.0], [" :", 0.0], ["<image>", 3.5], [HOSTILE, 1.0]]
            example["token_index"] = 3
        detail["quantiles"] = [
            {"low": 1.0, "high": 3.5, "share": 0.5, "n_tokens": 20,
             "examples": [detail["top_examples"][0]]},
            {"low": 0.1, "high": 1.0, "share": 0.5, "n_tokens": 20,
             "examples": [detail["top_examples"][1]]},
        ]  # fmt: skip
        detail["neighbours"] = [[(index + 1) % N_CARDS, 0.8], [40, 0.3]]
        detail["template_positions"] = [
            {"source": "base", "token": HOSTILE, "context": f"user {HOSTILE}",
             "activation": 9.44, "n_prompts": 8}
        ]  # fmt: skip
        detail["dropped"] = {"template_tokens": 8, "duplicate_contexts": 1}
        detail["density"] = {"base": 0.01 * (index + 1), "tuned": 0.02 * (index + 1)}
        latents["details"][str(index)] = detail
    latents["latents"] += [
        {**latents["latents"][0], "index": i, "delta": 0.01 * i} for i in range(5, N_CARDS)
    ]
    latents["density"] = {
        "log10_edges": [-4.0, -3.0, -2.0, -1.0, 0.0], "counts": {"base": [5, 10, 30, 19],
        "tuned": [4, 9, 31, 20]}, "dead": {"base": 0, "tuned": 0}, "n_latents": 64,
    }  # fmt: skip
    path.write_text(json.dumps(latents))
    score = {"candidates": [{"name": "latent_3", "persona_auroc": 0.91},
                            {"name": "sae_set", "persona_auroc": 0.7}]}  # fmt: skip
    (root / "persona").mkdir()
    (root / "persona" / "score.json").write_text(json.dumps(score))
    return root


def test_latent_page_index_cards_and_heatmaps(tmp_path):
    html = write_dashboard(researcher_run(tmp_path / "run"), tmp_path / "r.html").read_text()
    assert HOSTILE not in html
    index = re.search(r'<table class="latent-index results" id="latent-index-0">.*?</table>',
                      html, re.S).group(0)  # fmt: skip
    assert index.count("<tr data-card=") == N_CARDS
    assert '<td data-sort="0.91">0.91</td>' in index  # latent 3's persona AUROC from score.json
    assert index.count('class="card-link"') == N_CARDS  # every row opens its card
    cards = re.findall(r'<details class="card" id="latent-0-(\d+)"( open)?>', html)
    assert len(cards) == N_CARDS and sum(1 for _, o in cards if o) == 6
    assert [int(i) for i, _ in cards[:2]] == [3, 1]  # selected, then runner-up, then the rest
    assert html.count('<canvas class="heatmap"') == 2 * N_CARDS  # top and quantile examples
    assert 'data-grid="[2, 3]"' in html and 'data-values="[0.0, 1.5, 3.5, 0.0, 0.0, 2.0]"' in html
    assert "Template positions, collapsed" in html and "in 8 prompts" in html
    assert "Nearest by decoder cosine" in html and 'href="#latent-0-4">4 (cos 0.80)</a>' in html
    assert "Examples by activation quantile" in html
    for figure in ("hist-0-3", "density-0-3", "logit-0-3"):
        assert f'id="{figure}"' in html


def test_collect_run_finds_each_artifact_once(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "table.json").write_text((run / "results.json").read_text())
    art = collect_run(run)
    assert [p.name for p, _ in art.results] == ["results.json"]  # not also table.json beside it
    assert [p.parent.name for p, _ in art.evals] == ["vsfa-seed0"]
    assert [p.name for p, _ in art.latents] == ["latents.json"]
    # the combined steering file at the top wins over the per-sweep file below it
    assert [p.relative_to(art.root).as_posix() for p, _ in art.steering] == ["steering.json"]
    assert [p.parent.name for p, _ in art.sae] == ["sae"]


def test_dashboard_is_standalone_and_escapes_all_text(tmp_path):
    out = write_dashboard(hostile_run(tmp_path / "run"), tmp_path / "report.html")
    html = out.read_text()
    assert HOSTILE not in html
    assert "&lt;script&gt;document.documentElement" in html
    # plotly.js inline, nothing fetched from the network
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"<link[^>]+href=", html)
    assert html.count('id="results-table"') == 1
    assert html.count("data:image/png;base64,") >= 1
    # sections: results, latent cards for the selected latent and the runner-up, steering, SAE
    for marker in ('id="latent-0-3"', 'id="latent-0-1"', 'id="steering-0"', 'id="sae-0"'):
        assert marker in html
    assert "steering-1" not in html
    assert "add latent 3 (blocks.2.hook_resid_post) alpha 4: ASR 60.0% -&gt; " in html


def test_dashboard_command(tmp_path):
    run = make_run(tmp_path / "run")
    runner = CliRunner()
    result = runner.invoke(app, ["dashboard", "--run", str(run), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "report:" in result.output and (tmp_path / "r.html").stat().st_size > 100_000
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["dashboard", "--run", str(tmp_path / "empty")])
    assert isinstance(result.exception, VSFAError)
    assert "holds no results.json" in str(result.exception)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_dashboard_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); cannot render the HTML")
    out = write_dashboard(researcher_run(tmp_path / "run"), tmp_path / "report.html")
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            out.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    assert "data-pwned" not in dom.split("<body", 1)[0]  # the hostile script never ran
    # the table is in the rendered DOM with a row per method
    table = re.search(r'<table class="results" id="results-table">.*?</table>', dom, re.S)
    assert table is not None
    assert table.group(0).count("<tr>") == 4
    assert "vlguard" in table.group(0)
    # plotly drew every figure (it adds a plot container per figure div)
    n_figures = len(re.findall(r'<div id="[^"]+" class="plotly-graph-div', dom))
    assert n_figures >= 7
    assert dom.count('class="plot-container plotly"') == n_figures
    # every chart carries a legend
    assert dom.count('class="legend"') >= n_figures
    # the page's script drew every heatmap canvas, and the latent index is there
    assert dom.count('<canvas class="heatmap"') == 2 * N_CARDS
    assert dom.count('data-drawn="1"') == 2 * N_CARDS
    assert dom.count("<tr data-card=") == N_CARDS
    # hostile tokens of the coloured context stay text
    assert '<span class="tok cur" style="background:rgba(214,39,40,0.214)" title="1">' in dom
    assert "&lt;script&gt;document.documentElement" in dom


def test_steering_findings_quote_every_alpha_with_its_controls_from_the_file():
    from interp.viz.dashboard import steering_findings

    def point(alpha, asr, capability=None):
        return {"alpha": alpha, "asr": {"value": asr}, "capability": capability}

    sweep = {
        "mode": "add", "latent": [3, 5], "hook_name": "blocks.2.hook_resid_post",
        "curve": [point(0, 0.6, 0.9), point(8, 0.1, 0.2), point(4, 0.3, 0.85)],
        "random_control": [point(0, 0.6), point(4, 0.55), point(4, 0.7),
                           point(8, 0.05), point(8, 0.2)],
        "effects": {"by_alpha": [{"alpha": 0, "random_rank_p": None},
                                 {"alpha": 4, "random_rank_p": 1 / 3},
                                 {"alpha": 8, "random_rank_p": 2 / 3}]},
    }  # fmt: skip
    mild, strong = steering_findings({"sweeps": {"add": sweep}})
    assert "add latent [3, 5] (blocks.2.hook_resid_post) alpha 4:" in mild
    assert "ASR 60.0% -> 30.0% (-30.0 points vs alpha 0)" in mild
    assert "random latents -5.0 points to +10.0 points (n=2), rank p 0.33" in mild
    assert mild.endswith("capability -5.0 points")
    assert "alpha 8: ASR 60.0% -> 10.0% (-50.0 points vs alpha 0)" in strong
    assert "random latents -55.0 points to -40.0 points (n=2), rank p 0.67" in strong
    assert strong.endswith("capability -70.0 points")
    del sweep["effects"]  # files written before the rank existed
    assert not any("rank p" in line for line in steering_findings(sweep))
