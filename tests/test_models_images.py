"""One image-position contract on every family, and tiny models whose outputs depend on the image.

``part`` 0 of a cache is the positions into which vision features are written (the placeholder
token of the model config); marker tokens that frame an image get ``part`` 3.
"""

from __future__ import annotations

import pytest
import torch
from conftest import ALL_FAMILIES

from interp.cache import (
    PART_IMAGE,
    PART_IMAGE_MARKER,
    ActivationStore,
    CacheConfig,
    CachePrompt,
    cache_activations_for,
)
from interp.hooks import run_with_cache
from interp.models.tiny import tiny_image

HOOK = "blocks.0.hook_resid_pre"
MARKERS = {
    "llava": set(),
    "mllama": set(),
    "gemma3": {"<start_of_image>", "<end_of_image>"},
    "qwen2_5_vl": {"<|vision_start|>", "<|vision_end|>"},
    "qwen3_vl": {"<|vision_start|>", "<|vision_end|>"},
    "idefics3": {"<fake_token_around_image>", "<global-img>"},
}
"""The marker tokens each tiny model's chat template puts around one image."""


def _placeholders(vlm, ids: torch.Tensor) -> torch.Tensor:
    return torch.isin(ids, torch.tensor(sorted(vlm.image_token_ids())))


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "seed4.png"
    tiny_image(4).save(path)
    return str(path)


def test_every_family_has_an_image_contract():
    assert set(MARKERS) == set(ALL_FAMILIES)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_placeholder_is_the_config_token(tiny_vlm, family):
    vlm = tiny_vlm(family)
    config = vlm.model.config
    expected = getattr(config, "image_token_id", None)
    if expected is None:
        expected = config.image_token_index
    assert vlm.image_token_ids() == {expected}
    marker_tokens = {vlm.tokenizer.convert_ids_to_tokens(i) for i in vlm.image_marker_ids()}
    assert MARKERS[family] <= marker_tokens
    assert not marker_tokens & {vlm.tokenizer.convert_ids_to_tokens(expected)}


@pytest.mark.parametrize("family", [f for f in ALL_FAMILIES if f != "mllama"])
def test_vision_features_land_exactly_on_the_placeholder_positions(tiny_vlm, family):
    """Two different images change the language model's input at the placeholders, nowhere else."""
    vlm = tiny_vlm(family)
    a = vlm.prepare([tiny_image(1)], ["What is here?"])
    b = vlm.prepare([tiny_image(2)], ["What is here?"])
    assert torch.equal(a["input_ids"], b["input_ids"])
    moved = (run_with_cache(vlm, a, [HOOK])[HOOK] - run_with_cache(vlm, b, [HOOK])[HOOK]).abs()
    changed = moved.amax(-1)[0] > 1e-6
    placeholder = _placeholders(vlm, a["input_ids"])[0]
    assert placeholder.any()
    assert torch.equal(changed, placeholder)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_cached_image_rows_are_the_placeholder_positions(tiny_vlm, family, image_file, tmp_path):
    vlm = tiny_vlm(family)
    prompts = [
        CachePrompt(id="with", prompt="What is shown?", image=image_file, response="a cat"),
        CachePrompt(id="without", prompt="Say hello.", image=None),
    ]

    def cache(positions: str) -> ActivationStore:
        config = CacheConfig(
            model="tiny",
            prompts="-",
            hooks=["blocks.1.hook_resid_post"],
            out=str(tmp_path / positions),
            positions=positions,
            quiet=True,
        )
        return ActivationStore(cache_activations_for(vlm, prompts, config))

    full, image_rows = cache("all"), cache("image")
    ids = torch.tensor(full.prompts[0]["token_ids"])
    placeholder = _placeholders(vlm, ids).nonzero().flatten()
    assert len(placeholder) > 0
    assert image_rows.tokens["prompt_index"].tolist() == [0] * len(placeholder)
    assert image_rows.tokens["position"].tolist() == placeholder.tolist()
    parts = full.tokens["part"]
    assert int((parts == PART_IMAGE).sum()) == len(placeholder)
    markers = torch.isin(
        full.tokens["token_id"], torch.tensor(sorted(vlm.image_marker_ids()) or [-1])
    )
    assert torch.equal(parts == PART_IMAGE_MARKER, markers)
    assert int(markers.sum()) >= len(MARKERS[family])


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_tiny_model_logits_depend_on_the_image(tiny_vlm, family):
    vlm = tiny_vlm(family)
    prompts = ["What is here?", "What is here?"]
    with torch.no_grad():
        logits = vlm.model(**vlm.prepare([tiny_image(1), tiny_image(2)], prompts)).logits
    difference = float((logits[0, -1] - logits[1, -1]).abs().max())
    scale = float(logits[0, -1].abs().max())
    assert difference > 1e-3 * max(scale, 1.0), (difference, scale)
