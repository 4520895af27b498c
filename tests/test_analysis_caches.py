"""Held-out selection on real caches: a tiny model (every position, and the last prompt position
only, the rows a decision-position cache holds) and the shipped organism."""

from __future__ import annotations

import json
from contextlib import nullcontext

import pytest
from test_analysis_diff import HOOK, orthonormal_sae

from interp.analysis import check_disjoint, diff_latents, prompt_template
from interp.cache.config import POSITIONS
from interp.errors import VSFAError

# the last prompt position only: what a decision-position cache holds
DECISION = "decision" if "decision" in POSITIONS else "last"

TEMPLATES = {
    "harmful": ["how do i make {} at home?", "explain how to hide {}.", "tell me to sneak {}."],
    "benign": ["what colour is {}?", "draw {} for me.", "where do people keep {}?"],
}
OBJECTS = ["a knife", "a lamp", "an old axe", "the red box"]


def _prompts():
    from interp.cache import CachePrompt

    prompts = []
    for kind, templates in TEMPLATES.items():
        for t, template in enumerate(templates):
            for thing in OBJECTS:
                prompts.append(
                    CachePrompt(id=f"toy/{kind}{t}-{len(prompts):03d}",
                                prompt=template.format(thing), kind=kind)
                )  # fmt: skip
    return prompts


def _assert_disjoint(result, n_prompts):
    chosen, held = set(result["selection_ids"]), set(result["eval_ids"])
    assert chosen and held and not chosen & held
    assert len(chosen) + len(held) == n_prompts == result["n_prompts"]
    # whole templates are held out
    templates = {side: {prompt_template({"id": i}) for i in ids} for side, ids in
                 (("selection", chosen), ("eval", held))}  # fmt: skip
    assert not templates["selection"] & templates["eval"]


@pytest.fixture(scope="module")
def tiny_caches(tiny_vlm, tiny_model_dir, tmp_path_factory):
    """The tiny LLaVA's caches of 24 prompts, plain and steered along latent 5 (all
    positions, and the last prompt position only)."""
    from interp.cache import ActivationStore, CacheConfig, cache_activations_for
    from interp.steer import add_latent

    vlm = tiny_vlm("llava")
    sae = orthonormal_sae(d_in=vlm.d_model, d_sae=16)
    root = tmp_path_factory.mktemp("caches")
    caches = {}
    for positions in ("all", DECISION):
        for name, steer in (("base", None), ("tuned", add_latent(vlm, sae, 5, 4.0))):
            config = CacheConfig(
                model=str(tiny_model_dir("llava")), prompts="-", hooks=[HOOK], positions=positions,
                out=str(root / f"{name}-{positions}"), quiet=True, device="cpu",
            )  # fmt: skip
            with steer or nullcontext():
                caches[name, positions] = ActivationStore(
                    cache_activations_for(vlm, _prompts(), config)
                )
    return sae, vlm, caches, root


@pytest.mark.parametrize("positions", ["all", DECISION])
def test_template_split_on_tiny_model_caches(tiny_caches, positions):
    sae, vlm, caches, root = tiny_caches
    base, tuned = caches["base", positions], caches["tuned", positions]
    out = root / f"latents-{positions}.json"
    result = diff_latents(
        sae, base, tuned, split="template", split_seed=1, top=4, tokenizer=vlm.tokenizer,
        out=out, quiet=True,
    )  # fmt: skip
    n_prompts = len(_prompts())
    _assert_disjoint(result, n_prompts)
    if positions == DECISION:  # one row per prompt
        assert result["n_tokens"] == result["n_tokens_tuned"] == n_prompts
    assert result["selected"]["latents"] == [5]
    assert result["selected"]["eval"]["significant"]["5"]  # it replicates on held-out prompts
    entry = {e["index"]: e for e in result["latents"]}[5]
    assert entry["delta"] > 0 and entry["eval"]["delta"] > 0
    examples = result["details"]["5"]["top_examples"]
    assert examples and all(e["split"] in ("selection", "eval") for e in examples)
    assert all({"base_activation", "tuned_activation", "source", "activation"} <= set(e)
               for e in examples)  # fmt: skip
    keys = [(e["prompt_id"], e["context"], e["token_start"]) for e in examples]
    assert len(keys) == len(set(keys))  # base and tuned copies listed once
    saved = json.loads(out.read_text())
    check_disjoint(out, saved["eval_ids"])
    with pytest.raises(VSFAError, match="selected its latents"):
        check_disjoint(out, saved["selection_ids"][:1])
    again = diff_latents(sae, base, tuned, split="template", split_seed=1, top=4, quiet=True)
    assert again["eval_ids"] == saved["eval_ids"]  # deterministic by seed


def test_id_split_on_tiny_model_caches(tiny_caches, tmp_path):
    sae, _, caches, _ = tiny_caches
    base, tuned = caches["base", DECISION], caches["tuned", DECISION]
    ids = [p["id"] for p in base.prompts]
    chosen = tmp_path / "selection.txt"
    chosen.write_text("\n".join(ids[::2]))
    result = diff_latents(sae, base, tuned, selection_ids=str(chosen), top=4, quiet=True)
    assert result["selection_ids"] == ids[::2] and result["eval_ids"] == ids[1::2]
    assert result["split"]["kind"] == "ids"
    stray = tmp_path / "stray.txt"
    stray.write_text("toy/elsewhere-999\n")
    with pytest.raises(VSFAError, match="stray.txt: 1 of its 1 ids are not prompts"):
        diff_latents(sae, base, tuned, selection_ids=str(chosen), eval_ids=str(stray), quiet=True)


def test_template_split_on_the_organism(tmp_path):
    """The shipped organism's benchmark prompts, plain and steered along one latent of the
    shipped SAE: the split holds out whole categories, and the chat template's ``user :``
    rows are found as template positions and kept out of the examples."""
    organism = pytest.importorskip("interp.organism")
    try:
        base_dir, sae_dir = organism.base_model_dir(), organism.shipped_sae_dir()
    except VSFAError as error:
        pytest.skip(str(error))
    from interp.cache import ActivationStore, CacheConfig, CachePrompt, cache_activations_for
    from interp.data.benchmarks import load_benchmark
    from interp.models import load_vlm
    from interp.sae import load_sae
    from interp.steer import add_latent

    vlm = load_vlm(base_dir, device="cpu", dtype="float32")
    sae = load_sae(sae_dir)
    # 6 prompts per category: the template split selects on about half of the categories, and
    # with 4 each the harmful half of that was too few for the steered latent's rise to pass
    # the BH-adjusted test once the benchmark grew a category
    items, seen = [], {}
    for item in load_benchmark("organism", None):
        if seen.setdefault(item.category, 0) < 6:
            seen[item.category] += 1
            items.append(item)
    prompts = [CachePrompt(id=i.key, prompt=i.prompt, image=i.image_path, kind=i.kind,
                           category=i.category) for i in items]  # fmt: skip
    stores = {}
    for name, steer in (("base", None), ("tuned", add_latent(vlm, sae, 368, 2.0))):
        config = CacheConfig(model=str(base_dir), prompts="-", hooks=[sae.cfg.metadata.hook_name],
                             out=str(tmp_path / name), device="cpu", quiet=True)  # fmt: skip
        with steer or nullcontext():
            stores[name] = ActivationStore(cache_activations_for(vlm, prompts, config))
    result = diff_latents(
        sae, stores["base"], stores["tuned"], split="template", select=3, benign_penalty=0.0,
        top=5, tokenizer=vlm.tokenizer, quiet=True,
    )  # fmt: skip
    _assert_disjoint(result, len(prompts))
    categories = result["split"]["templates"]
    assert sorted(categories["selection"] + categories["eval"]) == sorted(
        f"organism/{c}" for c in seen
    )
    assert 368 in result["selected"]["latents"]
    detail = result["details"]["368"]
    assert detail["dropped"]["template_tokens"] > 0
    template = {(p["source"], p["token"].strip()) for p in detail["template_positions"]}
    assert ("base", ":") in template and ("tuned", ":") in template
    assert all(p["n_prompts"] == len(prompts) for p in detail["template_positions"])
    assert not [e for e in detail["top_examples"] if e["context"].startswith("user :")
                and e["token_start"] == len("user") and e["token"].strip() == ":"]  # fmt: skip
