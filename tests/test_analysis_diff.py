"""Model diffing on planted activations, and on real caches of a tiny model under steering."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from interp.analysis import (
    benjamini_hochberg,
    diff_latents,
    load_diff_of_means,
    paired_test,
)
from interp.errors import VSFAError

HOOK = "blocks.1.hook_resid_post"
D_MODEL, D_SAE = 64, 48


@dataclass
class PlantedStore:
    """An in-memory activation folder with the ActivationStore interface."""

    acts: torch.Tensor
    tokens: dict[str, torch.Tensor]
    prompts: list[dict[str, Any]]
    manifest: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.manifest = {"hook_names": [HOOK], "d_model": self.acts.shape[1], "model": "planted"}

    def load(self, hook_name):
        assert hook_name == HOOK
        return self.acts


def orthonormal_sae(d_in=D_MODEL, d_sae=D_SAE, seed=0, hook=HOOK):
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d_in, d_sae, generator=g))
    sae = StandardSAE(
        StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=SAEMetadata(hook_name=hook))
    )
    with torch.no_grad():
        sae.W_dec.copy_(q.T)
        sae.W_enc.copy_(q)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def planted_pair(sae, *, shifts=(), n_prompts=40, tokens=6, noise=0.3, seed=0):
    """Base and tuned activations: shared signal, independent noise, planted shifts on tuned.

    Both sides get the same amount of noise: noise on one side only would raise every ReLU
    latent's mean (convexity), a real but uninteresting difference.

    ``shifts``: ``(latent, amount, kinds)`` adds ``amount * W_dec[latent]`` on prompts of those
    kinds. Prompts alternate harmful / benign.
    """
    g = torch.Generator().manual_seed(seed)
    rows = n_prompts * tokens
    signal = torch.randn(rows, D_MODEL, generator=g)
    base = signal + noise * torch.randn(rows, D_MODEL, generator=g)
    tuned = signal + noise * torch.randn(rows, D_MODEL, generator=g)
    prompt_index = torch.arange(n_prompts).repeat_interleave(tokens)
    kinds = ["harmful" if i % 2 == 0 else "benign" for i in range(n_prompts)]
    for latent, amount, on in shifts:
        mask = torch.tensor([kinds[i] in on for i in prompt_index.tolist()])
        tuned[mask] += amount * sae.W_dec[latent].detach()
    token_ids = torch.randint(0, 256, (n_prompts, tokens), generator=g)
    columns = {
        "prompt_index": prompt_index,
        "position": torch.arange(tokens).repeat(n_prompts),
        "token_id": token_ids.reshape(-1),
        "part": torch.ones(rows, dtype=torch.long),
    }
    prompts = [
        {
            "index": i,
            "id": f"p{i}",
            "prompt": f"prompt {i}",
            "image": None,
            "kind": kinds[i],
            "category": "x",
            "token_ids": token_ids[i].tolist(),
        }
        for i in range(n_prompts)
    ]
    return PlantedStore(base, columns, prompts), PlantedStore(tuned, dict(columns), prompts)


def test_planted_shift_is_ranked_first_and_significant(tmp_path):
    sae = orthonormal_sae()
    base, tuned = planted_pair(sae, shifts=[(7, 1.5, ("harmful", "benign"))])
    result = diff_latents(sae, base, tuned, out=tmp_path / "latents.json", top=5)
    first = result["latents"][0]
    assert first["index"] == 7 and first["delta"] > 0.3
    assert first["p_adjusted"] < 1e-6
    assert first["tuned_freq"] > first["base_freq"]
    # only the planted latent is significant (noise on the rest)
    assert result["n_significant_increased"] == 1
    assert result["selected"]["latents"] == [7]
    assert len(result["selected"]["runners_up"]) == 5
    # evidence for the top latents
    detail = result["details"]["7"]
    assert detail["top_examples"] and {e["source"] for e in detail["top_examples"]} <= {
        "base",
        "tuned",
    }
    example = detail["top_examples"][0]
    assert example["context"][example["token_start"] : example["token_end"]] == example["token"]
    assert max(detail["histogram"]["tuned"]) > 0
    # written atomically with the diff-of-means direction beside it
    saved = json.loads((tmp_path / "latents.json").read_text())
    assert saved["selected"]["latents"] == [7] and saved["hook_name"] == HOOK
    direction = load_diff_of_means(tmp_path / "latents.json")
    cosine = torch.nn.functional.cosine_similarity(direction, sae.W_dec[7].detach(), dim=0)
    assert cosine > 0.9


def test_random_noise_gives_no_significant_latent():
    sae = orthonormal_sae()
    for seed in range(3):
        base, tuned = planted_pair(sae, seed=seed, noise=0.5)
        result = diff_latents(sae, base, tuned, top=5, seed=seed)
        assert result["n_significant_increased"] == 0
        assert result["selected"]["latents"] == []
        assert not any(result["selected"]["significant"].values())


def test_selection_prefers_harmful_specific_increase():
    sae = orthonormal_sae()
    # latent 3 rises more, but everywhere; latent 11 rises only on harmful prompts
    base, tuned = planted_pair(
        sae, shifts=[(3, 2.0, ("harmful", "benign")), (11, 1.2, ("harmful",))]
    )
    result = diff_latents(sae, base, tuned, top=5, n_runners_up=3)
    assert result["latents"][0]["index"] == 3  # the ranking is by raw increase
    assert result["selected"]["latents"] == [11]  # the rule prefers the harmful-specific one
    assert 3 in result["selected"]["runners_up"]
    entry = {e["index"]: e for e in result["latents"]}[11]
    assert entry["harmful_delta"] > 0.3 and abs(entry["benign_delta"]) < 0.1


def test_decreased_latents_are_listed():
    sae = orthonormal_sae()
    base, tuned = planted_pair(sae, shifts=[(5, -2.0, ("harmful", "benign"))])
    # make latent 5 fire in the base so there is something to lower
    base.acts += 2.0 * sae.W_dec[5].detach()
    tuned.acts += 2.0 * sae.W_dec[5].detach()
    result = diff_latents(sae, base, tuned, top=4)
    decreased = [e for e in result["latents"] if e["direction"] == "decreased"]
    assert decreased[0]["index"] == 5 and decreased[0]["p_adjusted"] < 1e-6


def test_permutation_test_agrees_with_ttest():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(30, 4))
    tuned = base + rng.normal(scale=0.5, size=(30, 4))
    tuned[:, 0] += 1.0
    p_t = paired_test(base, tuned, test="ttest")
    p_perm = paired_test(base, tuned, test="permutation", n_permutations=500, seed=1)
    assert p_t[0] < 1e-3 and p_perm[0] < 1e-2
    assert ((p_perm < 0.05) == (p_t < 0.05)).all()  # same verdicts
    assert paired_test(base, base.copy())[0] == 1.0  # no variation: no evidence
    adjusted = benjamini_hochberg(np.array([0.01, 0.02, 0.5]))
    np.testing.assert_allclose(adjusted, [0.03, 0.03, 0.5])


def test_logit_effect_and_bad_inputs():
    from interp.analysis import logit_effect

    unembedding = torch.eye(5, 3)
    effect = logit_effect(torch.tensor([1.0, -2.0, 0.0]), unembedding, None, n=2)
    assert effect["promoted"][0] == ["<0>", 1.0]
    assert effect["suppressed"][0] == ["<1>", -2.0]

    sae = orthonormal_sae()
    base, tuned = planted_pair(sae)
    with pytest.raises(VSFAError, match="no activations for"):
        diff_latents(sae, base, tuned, hook="blocks.3.hook_resid_post")
    wide = orthonormal_sae(d_in=D_MODEL * 2, d_sae=8)
    with pytest.raises(VSFAError, match="d_model"):
        diff_latents(wide, base, tuned)
    other = planted_pair(sae)[1]
    other.prompts = [dict(p, id=f"q{p['index']}") for p in other.prompts]
    with pytest.raises(VSFAError, match="share 0 prompt"):
        diff_latents(sae, base, other)
    with pytest.raises(VSFAError, match="--test"):
        diff_latents(sae, base, tuned, test="magic")
