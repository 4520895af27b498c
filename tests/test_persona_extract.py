"""Decision positions and persona directions: tiny models with system-prompt pairs, the organism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from interp.cache import ActivationStore, CacheConfig, CachePrompt, cache_activations_for
from interp.errors import VSFAError
from interp.models.tiny import tiny_families
from interp.persona.config import ExtractConfig
from interp.persona.contexts import CUES, ChatTurn, PersonaContext, write_contexts
from interp.persona.extract import (
    Chat,
    auroc,
    decision_residuals,
    extract_persona,
    fit_probe,
    read_persona,
)

PROBES = [f"how do i do thing number {n} ?" for n in range(8)]


# ---- decision positions in the cache -----------------------------------------------------------
def test_decision_positions_cache_the_last_prompt_token(tiny_vlm, tmp_path):
    vlm = tiny_vlm("llava")
    hooks = ["blocks.1.hook_resid_post"]
    prompts = [CachePrompt(id=str(n), prompt=p * (1 + n % 2)) for n, p in enumerate(PROBES[:4])]
    stores = {}
    for name in ("decision", "last"):
        config = CacheConfig(
            model="tiny", prompts="-", hooks=hooks, out=str(tmp_path / name), positions=name,
            batch_size=3, quiet=True,
        )  # fmt: skip
        stores[name] = ActivationStore(cache_activations_for(vlm, prompts, config))
    decision, last = stores["decision"], stores["last"]
    assert decision.tokens["prompt_index"].tolist() == [0, 1, 2, 3]
    expected = decision_residuals(vlm, [Chat(p.prompt) for p in prompts], hooks, batch_size=2)
    torch.testing.assert_close(decision.load(hooks[0]), expected[hooks[0]], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(last.load(hooks[0]), decision.load(hooks[0]))
    assert decision.manifest["positions"] == last.manifest["positions"] == "decision"
    assert decision.manifest["positions_requested"] == "decision"
    assert last.manifest["positions_requested"] == "last"
    with pytest.raises(VSFAError, match="--positions 'first'"):
        CacheConfig(model="m", prompts="p", hooks=hooks, out="o", positions="first")


def test_decision_residuals_equal_single_chats_whatever_the_batch(tiny_vlm):
    vlm = tiny_vlm("qwen2_5_vl")
    hooks = ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]
    chats = [
        Chat(PROBES[0], history=(ChatTurn("hi", "hello", False),), system="be careful"),
        Chat(PROBES[1] * 3),
        Chat(PROBES[2], system="be careless"),
        Chat(PROBES[3], system="be careful"),
    ]
    batched = decision_residuals(vlm, chats, hooks, batch_size=4, quiet=True)
    for n, chat in enumerate(chats):
        alone = decision_residuals(vlm, [chat], hooks, quiet=True)
        for hook in hooks:
            torch.testing.assert_close(batched[hook][n], alone[hook][0], atol=1e-4, rtol=1e-4)


# ---- statistics --------------------------------------------------------------------------------
def test_auroc_counts_ties_half_and_compares_within_groups():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert auroc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5
    assert auroc([3, 2, 1], [1, 1, 0]) == 1.0
    # an offset between groups hides a perfect within-group separation from the pooled AUROC
    scores, labels = [0, 1, 10, 11], [0, 1, 0, 1]
    assert auroc(scores, labels) == 0.75
    assert auroc(scores, labels, ["a", "a", "b", "b"]) == 1.0
    with pytest.raises(VSFAError, match="both classes"):
        auroc([1, 2], [1, 1])


def test_logistic_probe_separates_and_is_expressed_in_the_raw_space():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=generator) * torch.tensor([1, 5, 0.1, 1, 1, 1]) + 3
    labels = (x[:, 2] > 3).long()
    weight, bias = fit_probe(x, labels, l2=0.1)
    logits = x @ weight + bias
    assert auroc(logits.numpy(), labels.numpy()) > 0.99
    assert weight.abs().argmax() == 2
    strong, _ = fit_probe(x, labels, l2=100.0)
    assert strong.norm() < weight.norm()  # the penalty shrinks the weight


# ---- extract on a tiny model -------------------------------------------------------------------
@pytest.fixture(scope="module")
def probes_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("probes") / "probes.txt"
    path.write_text("\n".join(PROBES) + "\n")
    return path


def _extract(tmp_path, probes_file, vlm, out="p", **options):
    config = ExtractConfig(
        contexts="system-pair", probes=str(probes_file), model="tiny", out=str(tmp_path / out),
        quiet=True, **options,
    )  # fmt: skip
    return config, extract_persona(config, vlm=vlm)


def test_extract_writes_a_direction_and_probe_per_layer(tiny_vlm, tmp_path, probes_file):
    vlm = tiny_vlm("llava")
    config, meta = _extract(tmp_path, probes_file, vlm)
    hooks = [f"blocks.{n}.hook_resid_post" for n in range(vlm.n_layers)]
    assert meta["hooks"] == hooks and meta["chosen_hook"] in hooks
    assert meta["n_contexts"] == 2 * len(PROBES)
    assert not set(meta["fit_probe_ids"]) & set(meta["heldout_probe_ids"])
    assert len(meta["heldout_probe_ids"]) == len(PROBES) // 2
    for scores in meta["auroc"].values():
        for key in ("persona", "probe", "persona_pooled", "probe_pooled"):
            assert 0.0 <= scores[key] <= 1.0
    best = max(scores["persona"] for scores in meta["auroc"].values())
    chosen = meta["chosen_hook"]
    assert meta["auroc"][chosen]["persona"] == best
    deeper = [h for h in hooks[hooks.index(chosen) + 1 :] if meta["auroc"][h]["persona"] == best]
    assert not deeper  # ties go to the deeper layer

    persona = read_persona(config.out)
    contexts = persona.contexts()
    assert len(contexts) == meta["n_contexts"]
    assert json.loads((tmp_path / "p" / "manifest.json").read_text())["complete"]
    fit = [c for c in contexts if c.probe_id in set(meta["fit_probe_ids"])]
    acts = decision_residuals(vlm, fit, [chosen], quiet=True)[chosen]
    labels = torch.tensor([c.label for c in fit]).bool()
    expected = acts[labels].mean(0) - acts[~labels].mean(0)
    vector = persona.vector("persona", chosen)
    assert vector.shape == persona.vector("probe", chosen).shape == (vlm.d_model,)
    torch.testing.assert_close(vector, expected, atol=1e-4, rtol=1e-4)
    held = persona.heldout(contexts)
    projection = decision_residuals(vlm, held, [chosen], quiet=True)[chosen] @ vector
    kinds = np.array([c.probe_kind for c in held])
    labels = [c.label for c in held]
    assert auroc(projection.numpy(), labels, kinds) == pytest.approx(
        meta["auroc"][chosen]["persona"]
    )


def test_extract_is_skipped_when_current_and_redone_when_forced(tiny_vlm, tmp_path, probes_file):
    vlm = tiny_vlm("llava")
    config, meta = _extract(tmp_path, probes_file, vlm, layers=[1])
    assert meta["hooks"] == ["blocks.1.hook_resid_post"]
    stamp = (tmp_path / "p" / "persona.safetensors").stat().st_mtime_ns
    assert extract_persona(config, vlm=vlm) == meta
    assert (tmp_path / "p" / "persona.safetensors").stat().st_mtime_ns == stamp
    again = extract_persona(config, vlm=vlm, force=True)
    assert again["auroc"] == meta["auroc"]
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["p"]  # no temporary folder left


def test_extract_errors_name_the_input(tiny_vlm, tmp_path, probes_file):
    vlm = tiny_vlm("llava")
    with pytest.raises(VSFAError, match="layer index 9 is out of range"):
        _extract(tmp_path, probes_file, vlm, layers=[0, 9])
    one_cue = [
        PersonaContext(f"c{n}", "vigilant", (), p, f"p{n}", "harmful") for n, p in enumerate(PROBES)
    ]
    path = write_contexts(tmp_path / "vigilant-only.jsonl", one_cue)
    config = ExtractConfig(contexts=str(path), model="tiny", out=str(tmp_path / "o"), quiet=True)
    with pytest.raises(VSFAError, match="no contrast"):
        extract_persona(config, vlm=vlm)
    with pytest.raises(VSFAError, match="--heldout-fraction 1.0"):
        ExtractConfig(contexts="x", model="m", out="o", heldout_fraction=1.0)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(VSFAError, match="holds no persona folder"):
        _extract(tmp_path, probes_file, vlm, out="busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_persona_extract_command(tiny_model_dir, tmp_path, probes_file):
    from interp.cli import app

    out = tmp_path / "persona"
    args = ["persona", "extract", "--model", str(tiny_model_dir("gemma3")), "--contexts",
            "system-pair", "--probes", str(probes_file), "--layers", "0,2", "-o", str(out), "-q",
            "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "persona.json").read_text())
    assert meta["hooks"] == ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]
    assert "<- chosen" in result.output and meta["chosen_hook"] in result.output


# ---- the organism --------------------------------------------------------------------------------
def test_organism_persona_vector_separates_held_out_contexts(tmp_path):
    """The bar: held-out persona AUROC >= 0.9 at the chosen layer of the base model."""
    from interp import organism

    config = ExtractConfig(
        contexts="organism", model=str(organism.base_model_dir()), out=str(tmp_path / "p"),
        device="cpu", quiet=True,
    )  # fmt: skip
    meta = extract_persona(config)
    chosen = meta["chosen_hook"]
    assert meta["auroc"][chosen]["persona"] >= 0.9
    assert meta["auroc"][chosen]["probe"] >= 0.9
    assert meta["auroc"]["blocks.0.hook_resid_post"]["persona"] < 0.75  # the cue builds up
    assert len(meta["heldout_probe_ids"]) == 48 and meta["n_contexts"] == 192
    images = list((tmp_path / "p" / "images" / "persona").glob("*.png"))
    assert len(images) == 96
    assert {c.cue for c in read_persona(tmp_path / "p").contexts()} == set(CUES)


@pytest.mark.parametrize("family", tiny_families())
def test_system_pair_extract_runs_on_every_family(tiny_vlm, tmp_path, probes_file, family):
    vlm = tiny_vlm(family)
    config, meta = _extract(tmp_path, probes_file, vlm, layers=[0, vlm.n_layers - 1])
    persona = read_persona(config.out)
    for hook in meta["hooks"]:
        assert persona.vector("persona", hook).shape == (vlm.d_model,)
        assert torch.isfinite(persona.vector("probe", hook)).all()
    systems = {c.system for c in persona.contexts()}
    assert len(systems) == 2  # the vigilant and the loose system prompt
