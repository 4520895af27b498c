"""Top examples on hand-made activations: template positions, duplicate contexts, and base and
tuned copies of one row shown once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from interp.analysis.evidence import _Contexts, _row_indexes
from interp.analysis.examples import top_examples

TOKENS = 5  # per prompt: <1> <2> content <20> <30>


@dataclass
class Cache:
    tokens: dict[str, torch.Tensor]
    prompts: list[dict[str, Any]]
    manifest: dict[str, Any] = field(default_factory=dict)


def caches(n_prompts: int = 6):
    """Base and tuned caches of the same prompts; prompts 4 and 5 are the same text."""
    prompts = []
    for i in range(n_prompts):
        content = 50 if i >= 4 else 10 + i
        prompts.append(
            {"index": i, "id": f"p{i}", "prompt": "same" if i >= 4 else f"prompt {i}",
             "image": None, "token_ids": [1, 2, content, 20, 30]}
        )  # fmt: skip
    tokens = {
        "prompt_index": torch.arange(n_prompts).repeat_interleave(TOKENS),
        "position": torch.arange(TOKENS).repeat(n_prompts),
        "token_id": torch.tensor([t for p in prompts for t in p["token_ids"]]),
    }
    return Cache(tokens, prompts), Cache(dict(tokens), prompts)


def examples_of(base_values, tuned_values, n=8, part_of=None):
    base, tuned = caches(len(base_values))
    stores = {"base": base, "tuned": tuned}
    rows = _row_indexes(stores)
    contexts = {side: _Contexts(store, None, 12) for side, store in stores.items()}
    values = {
        "base": np.asarray(base_values, dtype=np.float64).reshape(-1),
        "tuned": np.asarray(tuned_values, dtype=np.float64).reshape(-1),
    }
    return top_examples(values, rows, contexts, n, part_of)


def test_template_positions_duplicates_and_merged_copies():
    base = np.zeros((6, TOKENS))
    base[:, 1] = 9.44  # the chat template's "user :": one value in every prompt
    base[:, 2] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # content: prompts 4 and 5 read the same
    base[0, 3] = 7.0  # fires on the base model only
    base[:2, 0] = 3.0  # one value, but in 2 of 6 prompts: not a template position
    tuned = base.copy()
    tuned[:, 1] = 9.44 + 1e-7 * np.arange(6)  # within the tolerance
    tuned[:, 2] += 0.5
    tuned[0, 3] = 0.0
    found = examples_of(base, tuned, part_of={"p0": "selection", "p5": "eval"})
    examples = found["top_examples"]

    assert all(e["token"] != "<2>" for e in examples)
    assert found["dropped"]["template_tokens"] == 12
    positions = found["template_positions"]
    assert {(p["source"], p["token"], p["n_prompts"]) for p in positions} == {
        ("base", "<2>", 6),
        ("tuned", "<2>", 6),
    }
    assert positions[0]["activation"] == 9.44

    # prompt 4's row reads exactly like prompt 5's (the higher): one of them, counted once
    content = [e for e in examples if e["token"] in ("<50>",)]
    assert [e["prompt_id"] for e in content] == ["p5"]
    assert found["dropped"]["duplicate_contexts"] == 1

    # one example per row, with both models' activations; source: where it fired more
    keys = [(e["prompt_id"], e["token"]) for e in examples]
    assert len(keys) == len(set(keys))
    by_key = {(e["prompt_id"], e["token"]): e for e in examples}
    p3 = by_key[("p3", "<13>")]
    assert p3["source"] == "tuned" and p3["activation"] == 4.5
    assert (p3["base_activation"], p3["tuned_activation"]) == (4.0, 4.5)
    only_base = by_key[("p0", "<20>")]
    assert only_base["source"] == "base" and only_base["tuned_activation"] == 0.0
    assert by_key[("p0", "<1>")]["activation"] == 3.0  # 2 of 6 prompts: kept
    assert [e["activation"] for e in examples] == sorted(
        (e["activation"] for e in examples), reverse=True
    )
    assert by_key[("p0", "<20>")]["split"] == "selection" and p3["split"] is None
    assert (
        examples[0]["context"][examples[0]["token_start"] : examples[0]["token_end"]]
        == (examples[0]["token"])
    )


def test_only_the_constant_rows_of_a_template_position_are_dropped():
    base = np.zeros((6, TOKENS))
    base[:, 1] = [9.9, 10.2, 9.44, 9.44, 9.44, 9.44]  # 4 of 6 at one value: a template
    found = examples_of(base, base.copy())
    assert found["dropped"]["template_tokens"] == 8
    kept = sorted(e["activation"] for e in found["top_examples"])
    assert kept == [9.9, 10.2]  # what the latent does differently there stays visible
    assert all(e["base_activation"] == e["tuned_activation"] for e in found["top_examples"])


def test_examples_per_cache_and_unshared_prompts():
    base = np.zeros((6, TOKENS))
    base[:, 3] = np.arange(1.0, 7.0)
    found = examples_of(base, np.zeros((6, TOKENS)), n=2)
    # two per cache (none from the silent tuned one); p4 reads as p5 does
    assert [e["prompt_id"] for e in found["top_examples"]] == ["p5", "p3"]
    assert found["dropped"] == {"duplicate_contexts": 1, "template_tokens": 0}
    assert not found["template_positions"]
    # a prompt the tuned cache lacks: its example has no tuned activation
    base_cache, tuned_cache = caches()
    tuned_cache.prompts = [dict(p, id=f"q{p['index']}") for p in tuned_cache.prompts]
    stores = {"base": base_cache, "tuned": tuned_cache}
    contexts = {side: _Contexts(store, None, 12) for side, store in stores.items()}
    values = {"base": base.reshape(-1), "tuned": np.zeros(6 * TOKENS)}
    found = top_examples(values, _row_indexes(stores), contexts, 1)
    assert found["top_examples"][0]["tuned_activation"] is None
