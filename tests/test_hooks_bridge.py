"""Native hooks and TransformerLens's TransformerBridge give the same residual stream."""

from __future__ import annotations

import pytest
import torch
from conftest import ALL_FAMILIES

from interp.errors import HookNameError, UnsupportedFamilyError
from interp.hooks import run_with_cache
from interp.hooks.bridge import boot_bridge, bridge_run_with_cache
from interp.models import FAMILIES, load_vlm
from interp.models.compat import has_torchvision
from interp.models.tiny import tiny_image

BRIDGE_FAMILIES = [f for f in ALL_FAMILIES if FAMILIES[f].bridge]


@pytest.mark.parametrize("family", BRIDGE_FAMILIES)
def test_bridge_and_native_hooks_agree(tiny_model_dir, family):
    if FAMILIES[family].needs_video_processor and not has_torchvision():
        pytest.skip("TransformerLens's Qwen-VL bridge adapters import torchvision (not installed)")
    vlm = load_vlm(tiny_model_dir(family), device="cpu")
    inputs = vlm.prepare([tiny_image(3), None], ["What is here?", "Hello"])
    names = [vlm.hook_name(1), "blocks.2.hook_resid_pre"]
    native = run_with_cache(vlm, inputs, names, stop_early=False)
    bridge = boot_bridge(vlm)
    through_bridge = bridge_run_with_cache(bridge, vlm, inputs, names)
    real = inputs["attention_mask"].bool()
    for name in names:
        torch.testing.assert_close(through_bridge[name][real], native[name][real])


@pytest.mark.skipif(has_torchvision(), reason="checks the message shown without torchvision")
def test_qwen_bridge_without_torchvision_is_a_clear_error(tiny_model_dir):
    vlm = load_vlm(tiny_model_dir("qwen3_vl"), device="cpu")
    with pytest.raises(UnsupportedFamilyError, match="native hooks"):
        boot_bridge(vlm)


def test_mllama_has_no_bridge(tiny_vlm):
    with pytest.raises(UnsupportedFamilyError, match="native hooks"):
        boot_bridge(tiny_vlm("mllama"))


@pytest.mark.parametrize(
    "name, message",
    [
        ("blocks.9.hook_resid_post", "4 decoder layers"),
        ("blocks.1.hook_attn_out", "unknown hook name"),
        ("resid", "unknown hook name"),
    ],
)
def test_bad_hook_names_are_named_in_the_error(tiny_vlm, name, message):
    vlm = tiny_vlm("llava")
    inputs = vlm.prepare([None], ["hi"])
    with pytest.raises(HookNameError, match=message):
        run_with_cache(vlm, inputs, [name])
