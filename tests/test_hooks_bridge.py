"""Native hooks and TransformerLens's TransformerBridge give the same tensors under the same names.

The bridge runs attention eagerly, so the native side is switched to eager attention too. On
images, two bridge adapters compute the vision tower themselves and differ from ``transformers``
(so from the native hooks) before the language model is reached; they are compared on text and
on the hooks their image features still match.
"""

from __future__ import annotations

import pytest
from conftest import ALL_FAMILIES

from interp.errors import HookNameError, UnsupportedFamilyError
from interp.hooks import run_with_cache
from interp.hooks.bridge import boot_bridge, bridge_run_with_cache
from interp.hooks.points import block_hook_names
from interp.models import FAMILIES, load_vlm
from interp.models.tiny import tiny_image

BRIDGE_FAMILIES = [f for f in ALL_FAMILIES if FAMILIES[f].bridge]
IMAGE_HOOKS = {
    "qwen2_5_vl": "all",
    "qwen3_vl": "all",
    "idefics3": "all",
    # TransformerLens's CLIP tower gives image features ~3e-6 off, which dividing a residual
    # of norm ~0.1 by its RMS makes ~1e-4: the residual and sublayer hooks are compared.
    "llava": "unnormalized",
    # TransformerLens's SigLIP tower gives other image features (max diff 4.8 on the tiny
    # model's vision output): only text is compared.
    "gemma3": "none",
}
"""Which hooks are compared on a batch with an image."""


def _compare(vlm, bridge, native, inputs, names) -> float:
    through_bridge = bridge_run_with_cache(bridge, vlm, inputs, names)
    real = inputs["attention_mask"].bool()
    return max(float((through_bridge[n][real] - native[n][real]).abs().max()) for n in names)


def test_every_bridge_family_has_an_image_rule():
    assert set(IMAGE_HOOKS) == set(BRIDGE_FAMILIES)


@pytest.mark.parametrize("family", BRIDGE_FAMILIES)
def test_bridge_and_native_hooks_agree(tiny_model_dir, family):
    vlm = load_vlm(tiny_model_dir(family), device="cpu")
    vlm.model.set_attn_implementation("eager")
    names = block_hook_names(vlm, 1) + ["blocks.3.hook_resid_post", "blocks.0.hook_mlp_out"]
    text = vlm.prepare([None, None], ["Hello there", "Name a colour."])
    image = vlm.prepare([tiny_image(3), None], ["What is here?", "Hello"])
    native_text = run_with_cache(vlm, text, names, stop_early=False)
    native_image = run_with_cache(vlm, image, names, stop_early=False)
    bridge = boot_bridge(vlm)
    assert _compare(vlm, bridge, native_text, text, names) < 1e-5
    rule = IMAGE_HOOKS[family]
    if rule != "none":
        compared = [n for n in names if rule == "all" or "normalized" not in n]
        assert _compare(vlm, bridge, native_image, image, compared) < 1e-5


def test_qwen_bridge_boots_without_torchvision_and_installs_nothing(tiny_model_dir, monkeypatch):
    import subprocess

    def refuse(*args, **kwargs):
        raise AssertionError(f"booting the bridge ran {args}")

    monkeypatch.setattr(subprocess, "check_call", refuse)
    vlm = load_vlm(tiny_model_dir("qwen2_5_vl"), device="cpu")
    bridge = boot_bridge(vlm)
    assert bridge.processor is vlm.processor


def test_mllama_has_no_bridge(tiny_vlm):
    with pytest.raises(UnsupportedFamilyError, match="native hooks"):
        boot_bridge(tiny_vlm("mllama"))


@pytest.mark.parametrize(
    "name, message",
    [
        ("blocks.9.hook_resid_post", "4 decoder layers"),
        ("blocks.1.hook_attn_in", "unknown hook name"),
        ("resid", "unknown hook name"),
    ],
)
def test_bad_hook_names_are_named_in_the_error(tiny_vlm, name, message):
    vlm = tiny_vlm("llava")
    inputs = vlm.prepare([None], ["hi"])
    with pytest.raises(HookNameError, match=message):
        run_with_cache(vlm, inputs, [name])
