"""Scoring candidates against a persona folder: the shift share and its nulls, the organism."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from interp.errors import VSFAError
from interp.persona.config import ExtractConfig, ScoreConfig
from interp.persona.extract import Chat, decision_residuals, extract_persona
from interp.persona.score import score_candidates, shift_share


def test_shift_share_splits_the_shift_over_an_orthonormal_basis():
    generator = torch.Generator().manual_seed(0)
    diffs = torch.randn(40, 8, generator=generator) * 0.1
    diffs[:, 0] += 1.0  # every prompt moves along the first axis
    basis = torch.linalg.qr(torch.randn(8, 8, generator=generator))[0].T
    values = shift_share(diffs, basis, n_permutations=200, seed=0)
    assert values["share"].sum() == pytest.approx(1.0)
    axes = shift_share(diffs, torch.eye(8)[:2], n_permutations=200, seed=0)
    assert axes["share"][0] > 0.95 and axes["share"][1] < 0.05
    assert axes["projection"][0] == pytest.approx(float(diffs[:, 0].mean()))
    assert axes["projection_p"][0] == pytest.approx(1 / 201)  # moved along it beyond noise
    assert axes["random_p"][0] == pytest.approx(1 / 201)  # more aligned than random directions
    assert axes["random_p"][1] > 0.2 and axes["projection_p"][1] > 0.01
    again = shift_share(diffs, torch.eye(8)[:2], n_permutations=200, seed=0)
    assert all((again[key] == axes[key]).all() for key in axes)  # seeded


@pytest.fixture(scope="module")
def organism_inputs(tmp_path_factory):
    """The organism base, its persona folder, a briefly tuned VSFA adapter, the shipped SAE and
    a latents.json of latents that fire at the decision position."""
    from interp import organism
    from interp.cache.prompts import load_prompts
    from interp.data.vqa import BuildConfig, build_vqa
    from interp.models import load_vlm
    from interp.sae import load_sae
    from interp.train import train

    work = tmp_path_factory.mktemp("persona-score")
    base_dir = str(organism.base_model_dir())
    persona = work / "persona"
    extract_persona(ExtractConfig(contexts="organism", model=base_dir, out=str(persona),
                                  device="cpu", quiet=True))  # fmt: skip
    world = organism.write_world_data(work / "world", seed=0, n_threat=16, n_benign=1, n_corpus=1)
    vqa = work / "vqa.jsonl"
    build_vqa(BuildConfig(images=str(world["threat_images"]), out=str(vqa), seed=0, quiet=True))
    run = train(replace(organism.ORGANISM_RECIPE, model=base_dir, data=str(vqa),
                        out=str(work / "vsfa"), seed=0, max_steps=6, quiet=True))  # fmt: skip

    sae_dir = organism.shipped_sae_dir()
    sae = load_sae(sae_dir)
    hook = "blocks.2.hook_resid_post"
    prompts = [p for p in load_prompts("organism") if p.kind == "harmful"][:16]
    chats = [Chat(p.prompt, p.image) for p in prompts]
    base = load_vlm(base_dir, device="cpu", dtype="float32")
    tuned = load_vlm(base_dir, device="cpu", dtype="float32", adapter=run)
    x_base = decision_residuals(base, chats, [hook], quiet=True)[hook]
    x_tuned = decision_residuals(tuned, chats, [hook], quiet=True)[hook]
    with torch.no_grad():
        firing = sae.encode(x_base).mean(0)
    live = [int(i) for i in firing.argsort(descending=True)[:8]]
    latents = work / "latents.json"
    shift = (x_tuned - x_base).mean(0)
    latents.write_text(json.dumps({
        "hook_name": hook,
        "selection_ids": [p.id for p in prompts],
        "selected": {"latents": live[:3]},
        "latents": [{"index": i, "delta": 0.0} for i in live],
        "diff_of_means": {"vector": shift.tolist(), "file": "diff_of_means.safetensors"},
    }))  # fmt: skip
    return {"base": base_dir, "persona": persona, "run": str(run), "sae": str(sae_dir),
            "latents": latents, "live": live, "work": work, "sae_model": sae,
            "selection_ids": [p.id for p in prompts]}  # fmt: skip


def test_score_on_the_organism_with_the_shipped_sae(organism_inputs, tmp_path):
    from interp.cli import app

    inputs = organism_inputs
    args = ["persona", "score", "--persona", str(inputs["persona"]), "-m", inputs["base"],
            "--adapter", inputs["run"], "--sae", inputs["sae"], "--latents",
            str(inputs["latents"]), "--top", "5", "--latents-out", str(tmp_path / "copy"),
            "-o", str(tmp_path), "-q", "--device", "cpu", "--n-permutations", "200"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    score = json.loads((tmp_path / "score.json").read_text())
    persona = json.loads((inputs["persona"] / "persona.json").read_text())
    assert score["hook"] == "blocks.2.hook_resid_post"
    assert score["hooks"] == [score["hook"], persona["chosen_hook"]]
    assert score["heldout_probe_ids"] == persona["heldout_probe_ids"]
    # the organism benchmark's harmful items, less the 16 that selected the latents
    assert score["shift"]["excluded_selection_ids"] == 16
    assert score["shift"]["n_prompts"] > 100
    assert not set(score["shift"]["prompt_ids"]) & set(inputs["selection_ids"])
    rows = {row["name"]: row for row in score["candidates"]}
    live = inputs["live"]
    expected = ["sae_set", *(f"latent_{i}" for i in live[:5]), "diff_of_means", "persona_vector",
                "probe_direction", f"persona_vector@{persona['chosen_hook']}",
                f"probe_direction@{persona['chosen_hook']}"]  # fmt: skip
    assert list(rows) == expected
    for row in rows.values():
        assert 0 <= row["persona_auroc"] <= 1 and 0 <= row["persona_auroc_pooled"] <= 1
        assert -1 <= row["cosine_persona"] <= 1 + 1e-6
        assert 0 <= row["vsfa_shift_share"] <= 1 + 1e-9
        for key in ("shift_share_p", "shift_projection_p", "shift_share_random_p"):
            assert 1 / 201 - 1e-9 <= row[key] <= 1
    # the persona vector scores as it did when it was extracted, on the same held-out contexts
    vector = rows["persona_vector"]
    assert vector["cosine_persona"] == pytest.approx(1.0)
    assert vector["persona_auroc"] == pytest.approx(persona["auroc"][score["hook"]]["persona"])
    chosen = rows[f"persona_vector@{persona['chosen_hook']}"]
    assert chosen["persona_auroc"] == pytest.approx(
        persona["auroc"][persona["chosen_hook"]]["persona"]
    )
    # the shift measured on 16 prompts points along the others' shift, beyond chance
    assert rows["diff_of_means"]["vsfa_shift_share"] > 0.5
    assert rows["diff_of_means"]["shift_share_random_p"] == pytest.approx(1 / 201)
    # a latent's cosine is its decoder row's
    sae = inputs["sae_model"]
    from safetensors.torch import load_file

    direction = load_file(str(inputs["persona"] / "persona.safetensors"))
    reference = direction[f"persona/{score['hook']}"]
    row = sae.W_dec[live[0]].detach()
    cosine = torch.nn.functional.cosine_similarity(row, reference, dim=0)
    assert rows[f"latent_{live[0]}"]["cosine_persona"] == pytest.approx(float(cosine), abs=1e-5)
    copy = json.loads((tmp_path / "copy" / "latents.json").read_text())
    assert copy["selected"] == {"latents": live[:3]}
    assert set(copy["persona"]["candidates"]) == set(rows)
    assert copy["persona"]["heldout_probe_ids"] == persona["heldout_probe_ids"]


def test_score_errors_name_the_input(organism_inputs, tmp_path):
    inputs = organism_inputs
    config = ScoreConfig(persona=str(inputs["persona"]), model=inputs["base"],
                         adapter=inputs["run"], out=str(tmp_path), device="cpu",
                         hook="blocks.7.hook_resid_post", quiet=True)  # fmt: skip
    with pytest.raises(VSFAError, match="has no persona direction at blocks.7.hook_resid_post"):
        score_candidates(config)
    with pytest.raises(VSFAError, match="--latents needs --sae"):
        ScoreConfig(persona="p", model="m", adapter="a", out="o", latents="l.json")
    meta_path = inputs["persona"] / "persona.json"
    meta = json.loads(meta_path.read_text())
    bad = tmp_path / "bad-persona"
    bad.mkdir()
    (bad / "persona.safetensors").write_bytes(
        (inputs["persona"] / "persona.safetensors").read_bytes()
    )
    (bad / "persona.json").write_text(
        json.dumps(meta | {"fit_probe_ids": meta["heldout_probe_ids"][:2]})
    )
    with pytest.raises(VSFAError, match="fit and held-out overlap in 2 ids"):
        score_candidates(replace(config, persona=str(bad), hook=None))
