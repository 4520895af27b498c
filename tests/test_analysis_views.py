"""What the latent dashboard draws beside the top examples: context activations, image patches
on their grid, quantile bins, the density histogram and decoder neighbours."""

from __future__ import annotations

import numpy as np
import torch
from test_analysis_examples import Cache

from interp.analysis.evidence import _Contexts, _row_indexes, _with_views
from interp.analysis.examples import top_examples
from interp.analysis.views import (
    PromptRows,
    decoder_neighbours,
    density_histogram,
    patch_grid,
    quantile_examples,
)

IMAGE = 99
IDS = [1, IMAGE, IMAGE, IMAGE, IMAGE, IMAGE, IMAGE, 2, 7]  # <1>, 6 patches (2x3), <2>, content


def image_caches(n_prompts: int = 4):
    prompts = [
        {"id": f"p{i}", "prompt": f"prompt {i}", "image": None, "token_ids": IDS}
        for i in range(n_prompts)
    ]
    n = len(IDS)
    tokens = {
        "prompt_index": torch.arange(n_prompts).repeat_interleave(n),
        "position": torch.arange(n).repeat(n_prompts),
        "token_id": torch.tensor(IDS * n_prompts),
        "part": torch.tensor([0 if t == IMAGE else 1 for t in IDS] * n_prompts),
    }
    return Cache(tokens, prompts), Cache(dict(tokens), prompts)


def test_patches_follow_image_positions_and_context_carries_every_token():
    base, tuned = image_caches()
    stores = {"base": base, "tuned": tuned}
    values = {side: np.zeros(4 * len(IDS)) for side in stores}
    # prompt 2 on the tuned model: fires on patches 1 and 5 of its image and on the content
    row0 = 2 * len(IDS)
    values["tuned"][row0 + 2] = 4.0  # patch 1
    values["tuned"][row0 + 6] = 8.0  # patch 5
    values["tuned"][row0 + 8] = 2.0  # content token
    contexts = {side: _Contexts(store, None, 12) for side, store in stores.items()}
    found = top_examples(values, _row_indexes(stores), contexts, 4)
    rows = {side: PromptRows(store) for side, store in stores.items()}
    _with_views(found["top_examples"], values, rows, contexts)
    top = found["top_examples"][0]
    assert (top["prompt_id"], top["source"], top["activation"]) == ("p2", "tuned", 8.0)
    assert top["patches"] == [0.0, 4.0, 0.0, 0.0, 0.0, 8.0]
    assert top["grid"] == [2, 3]  # 6 patches of a square image: the most square grid
    # the whole context: one <image> piece (its largest patch) between the text tokens
    assert top["tokens"] == [["<1>", 0.0], ["<image>", 8.0], ["<2>", 0.0], ["<7>", 2.0]]
    assert top["tokens"][top["token_index"]][0] == "<image>"
    content = next(e for e in found["top_examples"] if e["activation"] == 2.0)
    assert content["tokens"][content["token_index"]] == ["<7>", 2.0]


def test_patch_grid_follows_the_image_shape():
    assert patch_grid(16) == [4, 4]
    assert patch_grid(8, (64, 32)) == [2, 4]  # wide image: more columns
    assert patch_grid(8, (32, 64)) == [4, 2]
    assert patch_grid(7) == [1, 7]


def test_quantile_bins_cover_the_nonzero_activations_and_skip_excluded_rows():
    rng = np.random.default_rng(0)
    values = {"base": rng.exponential(1.0, 400), "tuned": rng.exponential(2.0, 400)}
    values["base"][:100] = 0.0
    exclude = {"base": np.zeros(400, bool), "tuned": np.zeros(400, bool)}
    exclude["tuned"][:50] = True

    def context(side):
        return lambda row: {"context": f"{side} {row}", "token_start": 0, "token_end": 1,
                            "image": None, "row": row}  # fmt: skip

    bins = quantile_examples(values, exclude, {s: context(s) for s in values}, seed=1)
    assert len(bins) == 4 and bins[0]["high"] >= bins[-1]["high"]  # highest bin first
    assert sum(b["n_tokens"] for b in bins) == 300 + 350
    for b in bins:
        assert 1 <= len(b["examples"]) <= 3
        for example in b["examples"]:
            assert b["low"] - 1e-4 <= example["activation"] <= b["high"] + 1e-4
            assert not (example["source"] == "tuned" and example["row"] < 50)
    again = quantile_examples(values, exclude, {s: context(s) for s in values}, seed=1)
    assert again == bins  # seeded


def test_density_histogram_counts_every_latent_and_the_dead_apart():
    freq = {"base": np.array([0.0, 1e-3, 1e-2, 0.5]), "tuned": np.array([0.0, 0.0, 1e-1, 1.0])}
    density = density_histogram(freq, bins=10)
    assert density["dead"] == {"base": 1, "tuned": 2}
    assert sum(density["counts"]["base"]) == 3 and sum(density["counts"]["tuned"]) == 2
    assert density["log10_edges"][0] <= -3 and density["log10_edges"][-1] == 0.0


def test_decoder_neighbours_by_cosine():
    class SAE:
        W_dec = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])

    near = decoder_neighbours(SAE(), [0, 2], k=2)
    assert [i for i, _ in near["0"]] == [1, 2]
    assert near["0"][0][1] > 0.99 and near["2"][0][0] == 1
