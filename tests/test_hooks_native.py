"""The TransformerLens block hooks natively on every family: they compose into the residual
stream, replacements reach the rest of the forward, and ``vsfa cache`` takes them."""

from __future__ import annotations

import pytest
import torch
from conftest import ALL_FAMILIES
from typer.testing import CliRunner

from interp.cache import ActivationStore
from interp.cli import app
from interp.errors import HookNameError
from interp.hooks import hooked, run_with_cache
from interp.hooks.points import block_hook_names, parse_hook_name
from interp.models.tiny import tiny_image

LAYER = 1  # the tiny Mllama's cross-attention layer


def _inputs(vlm):
    return vlm.prepare([tiny_image(5), tiny_image(6)], ["What is here?", "Name the colour."])


@torch.no_grad()
def _forward(vlm, inputs, hooks) -> None:
    with hooked(vlm, hooks):
        vlm.model(**inputs, use_cache=False)


def _cache(vlm, inputs, names=None):
    return run_with_cache(vlm, inputs, names or block_hook_names(vlm, LAYER), stop_early=False)


_SUFFIXES = (
    "hook_resid_pre",
    "ln1.hook_normalized",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_normalized",
    "hook_mlp_out",
    "hook_resid_post",
)


def test_hook_names_and_aliases():
    assert [parse_hook_name(f"blocks.2.{s}", 4).name for s in _SUFFIXES] == [
        f"blocks.2.{s}" for s in _SUFFIXES
    ]
    aliases = {"hook_in": "hook_resid_pre", "hook_out": "hook_resid_post"}
    aliases |= {"attn.hook_out": "hook_attn_out", "mlp.hook_out": "hook_mlp_out"}
    aliases |= {"ln2.hook_in": "hook_resid_mid"}
    for alias, name in aliases.items():
        assert parse_hook_name(f"blocks.0.{alias}", 4).name == f"blocks.0.{name}"
    with pytest.raises(HookNameError, match="hook_mlp_out"):
        parse_hook_name("blocks.0.hook_attn_in", 4)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_block_hooks_compose_into_the_residual_stream(tiny_vlm, family):
    vlm = tiny_vlm(family)
    inputs = _inputs(vlm)
    acts = _cache(vlm, inputs)
    get = {s: acts[f"blocks.{LAYER}.{s}"] for s in _SUFFIXES}
    real = inputs["attention_mask"].bool()
    close = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        (get["hook_resid_pre"] + get["hook_attn_out"])[real], get["hook_resid_mid"][real], **close
    )
    torch.testing.assert_close(
        (get["hook_resid_mid"] + get["hook_mlp_out"])[real], get["hook_resid_post"][real], **close
    )
    assert get["hook_attn_out"][real].abs().max() > 1e-4
    assert get["hook_mlp_out"][real].abs().max() > 1e-4
    for norm, source in (("ln1", "hook_resid_pre"), ("ln2", "hook_resid_mid")):
        normalized = get[f"{norm}.hook_normalized"][real]
        module = vlm.family.block_module(vlm.layers[LAYER], norm)
        eps = getattr(module, "variance_epsilon", None) or module.eps
        x = get[source][real]
        expected = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        torch.testing.assert_close(normalized, expected, atol=1e-5, rtol=1e-5)
    # the residual stream after the layer is what output_hidden_states reports
    with torch.no_grad():
        hidden = vlm.model(**inputs, output_hidden_states=True, use_cache=False).hidden_states
    if family != "qwen3_vl":  # its deepstack adds image features between layers
        torch.testing.assert_close(get["hook_resid_post"][real], hidden[LAYER + 1][real])


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_replacing_a_sublayer_output_reaches_the_rest_of_the_forward(tiny_vlm, family):
    vlm = tiny_vlm(family)
    inputs = _inputs(vlm)
    real = inputs["attention_mask"].bool()
    mid, post = f"blocks.{LAYER}.hook_resid_mid", f"blocks.{LAYER}.hook_resid_post"
    seen: dict[str, torch.Tensor] = {}

    def record(name):
        return lambda value: seen.__setitem__(name, value.detach().clone())

    # a zero residual stream between attention and MLP: the layer's output is the MLP's alone
    mlp = f"blocks.{LAYER}.hook_mlp_out"
    _forward(vlm, inputs, {mid: torch.zeros_like, mlp: record("mlp"), post: record("post")})
    torch.testing.assert_close(seen["post"][real], seen["mlp"][real])
    attn = f"blocks.{LAYER}.hook_attn_out"
    if family == "mllama":  # a gated cross-attention layer: read only
        with pytest.raises(HookNameError, match="read but not replaced"):
            _forward(vlm, inputs, {attn: torch.zeros_like})
        return
    pre = f"blocks.{LAYER}.hook_resid_pre"
    _forward(vlm, inputs, {attn: torch.zeros_like, pre: record("pre"), mid: record("mid")})
    torch.testing.assert_close(seen["mid"][real], seen["pre"][real])


def test_normalized_hooks_are_read_only(tiny_vlm):
    vlm = tiny_vlm("llava")
    with pytest.raises(HookNameError, match="read but not replaced"):
        inputs = vlm.prepare([None], ["hi"])
        _forward(vlm, inputs, {"blocks.0.ln1.hook_normalized": torch.zeros_like})


def test_vsfa_cache_takes_an_mlp_hook(tiny_vlm, tiny_model_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is a cat?\nName a colour.\n")
    hooks = "blocks.1.hook_mlp_out,blocks.2.ln1.hook_normalized"
    args = ["cache", "--model", str(tiny_model_dir("llava")), "--prompts", str(prompts)]
    result = CliRunner().invoke(
        app, [*args, "--hooks", hooks, "-o", str(tmp_path / "acts"), "--device", "cpu", "-q"]
    )
    assert result.exit_code == 0, result.output
    store = ActivationStore(tmp_path / "acts")
    vlm = tiny_vlm("llava")
    first = store.prompts[0]
    inputs = {"input_ids": torch.tensor([first["token_ids"]])}
    expected = run_with_cache(vlm, inputs, hooks.split(","))
    rows = store.tokens["prompt_index"] == 0
    for name in hooks.split(","):
        torch.testing.assert_close(store.load(name)[rows], expected[name][0], atol=1e-5, rtol=1e-4)
