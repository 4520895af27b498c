"""``vsfa dashboard --neuronpedia DIR``: latent pages in Neuronpedia's feature JSON format,
recomputed from the SAE and its activation folders, checked against the SAE's own encoding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from interp import organism
from interp.cache import ActivationStore, CacheConfig, cache_activations_for, load_prompts
from interp.cli import app
from interp.errors import VSFAError
from interp.models import load_vlm
from interp.sae import load_sae
from interp.viz.neuronpedia import export_neuronpedia

SHIPPED = Path(__file__).resolve().parents[1] / "sae_checkpoints" / "organism-l2-topk384"
HOOK = "blocks.2.hook_resid_post"
FEATURE_KEYS = {
    "feature_index", "frac_nonzero", "pos_str", "pos_values", "neg_str", "neg_values",
    "freq_hist_data_bar_values", "freq_hist_data_bar_heights", "logits_hist_data_bar_values",
    "logits_hist_data_bar_heights", "num_tokens_for_dashboard", "activations",
}  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder: an organism cache (images and text), its copy as the "tuned" side, and
    the latent diff's latents.json with the shipped SAE."""
    root = tmp_path_factory.mktemp("np-run")
    vlm = load_vlm(organism.base_model_dir(), device="cpu")
    prompts = load_prompts("organism")
    prompts = prompts[:6] + [p for p in prompts if p.image is None][:6]
    base = root / "cache" / "base"
    config = CacheConfig(model="organism", prompts="-", hooks=[HOOK], out=str(base), quiet=True)
    cache_activations_for(vlm, prompts, config)
    shutil.copytree(base, root / "cache" / "tuned")
    args = ["latents", "diff", "--sae", str(SHIPPED), "--base-acts", str(base)]
    args += [
        "--tuned-acts",
        str(root / "cache" / "tuned"),
        "-o",
        str(root / "diff" / "latents.json"),
    ]
    result = CliRunner().invoke(app, [*args, "--no-model", "--top", "4", "-q"])
    assert result.exit_code == 0, result.output
    return root


def test_dashboard_exports_neuronpedia_batches(run):
    out = run / "np"
    result = CliRunner().invoke(
        app,
        ["dashboard", "--run", str(run), "--out", str(run / "r.html"), "--neuronpedia", str(out)],
    )
    assert result.exit_code == 0, result.output
    batch = json.loads((out / "batch-0.json").read_text())
    assert batch["model_id"] == "base" and batch["layer"] == 2
    assert batch["sae_set"] == SHIPPED.name
    latents = json.loads((run / "diff" / "latents.json").read_text())
    expected = [*latents["selected"]["latents"], *latents["selected"]["runners_up"]]
    indices = [f["feature_index"] for f in batch["features"]]
    assert indices[: len(expected)] == expected
    for feature in batch["features"]:
        assert set(feature) >= FEATURE_KEYS


def test_pages_match_the_sae_encoding(run, tmp_path):
    sae = load_sae(SHIPPED)
    stores = [ActivationStore(run / "cache" / side) for side in ("base", "tuned")]
    with torch.no_grad():
        acts = torch.cat([sae.encode(s.load(HOOK)) for s in stores])
    latent = int(acts.max(0).values.argmax())  # the strongest latent here
    (path,) = export_neuronpedia(SHIPPED, tmp_path, [latent], acts=[s.path for s in stores])
    (feature,) = json.loads(path.read_text())["features"]
    assert feature["frac_nonzero"] == pytest.approx(float((acts[:, latent] > 0).float().mean()))
    top = [a for a in feature["activations"] if a["bin_contains"] == -1]
    assert top and all(len(a["tokens"]) == len(a["values"]) for a in feature["activations"])
    assert max(top[0]["values"]) == pytest.approx(float(acts[:, latent].max()), abs=1e-3)
    # base and tuned copies of a prompt are one example
    assert len({tuple(a["tokens"]) for a in top}) == len(top)
    for example in feature["activations"]:
        if example["bin_contains"] != -1:
            assert example["bin_min"] < max(example["values"]) <= example["bin_max"] + 1e-3
    vlm = load_vlm(organism.base_model_dir(), device="cpu")
    effects = (sae.W_dec[latent] @ vlm.unembedding().T).detach().numpy()
    assert feature["pos_values"][0] == pytest.approx(float(effects.max()), abs=1e-3)
    assert feature["pos_values"] == sorted(feature["pos_values"], reverse=True)
    assert feature["neg_values"][0] == pytest.approx(float(effects.min()), abs=1e-3)
    assert np.sum(feature["freq_hist_data_bar_heights"]) == int((acts[:, latent] > 0).sum())


def test_bad_latents_are_one_line_errors(run, tmp_path):
    with pytest.raises(VSFAError, match="0..383"):
        export_neuronpedia(SHIPPED, tmp_path, [999], acts=[run / "cache" / "base"])
