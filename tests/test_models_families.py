"""Every supported family: load from a saved folder, batched forward and generation, chat format,
residual hooks equal to output_hidden_states; the family registry and its listing order."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import ALL_FAMILIES
from typer import Typer
from typer.testing import CliRunner

from interp.hooks import hooked, run_with_cache
from interp.models import FAMILIES, get_family, load_vlm
from interp.models.commands import register
from interp.models.tiny import tiny_image
from interp.registry import Registry

PROMPTS = ["What is shown in the picture?", "Say hello.", "Describe the colours."]


def batch(vlm):
    images = [tiny_image(0), None, tiny_image(1)]
    return vlm.prepare(images, PROMPTS, system="Answer briefly.")


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_load_detects_family_and_structure(tiny_vlm, family):
    vlm = tiny_vlm(family)
    assert vlm.family.name == family
    assert vlm.n_layers == 4
    assert vlm.d_model == 64
    assert vlm.hook_name(2) == "blocks.2.hook_resid_post"
    assert vlm.device.type == "cpu" and vlm.dtype == torch.float32


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_chat_format_places_image_tokens_before_the_text(tiny_vlm, family):
    vlm = tiny_vlm(family)
    inputs = batch(vlm)
    image_ids = vlm.image_token_ids()
    assert image_ids, "the family adapter must know its image token ids"
    ids = inputs["input_ids"]
    mask = inputs["attention_mask"].bool()
    is_image = torch.isin(ids, torch.tensor(sorted(image_ids)))
    # items 0 and 2 have an image, item 1 has none
    assert is_image[0].any() and is_image[2].any()
    assert not is_image[1].any()
    assert not (is_image & ~mask).any(), "image tokens must not sit in the padding"
    # the image comes before the user's text: the last image token precedes the prompt's tokens
    text = vlm.chat_text(PROMPTS[0], image=True, system="Answer briefly.")
    assert text.rfind(PROMPTS[0]) > max(text.find(tok) for tok in _image_markers(vlm))
    # left padding: padding (if any) is at the start of each row
    for row in mask:
        first = int(row.float().argmax())
        assert row[first:].all()


def _image_markers(vlm) -> list[str]:
    tokenizer = vlm.tokenizer
    markers = [tokenizer.convert_ids_to_tokens(i) for i in vlm.image_token_ids()]
    return [m for m in markers if m is not None]


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_batched_greedy_generation_returns_only_new_tokens(tiny_vlm, family):
    vlm = tiny_vlm(family)
    inputs = batch(vlm)
    new_ids = vlm.generate_ids(inputs, max_new_tokens=6)
    assert new_ids.shape[0] == 3 and 1 <= new_ids.shape[1] <= 6
    # greedy and batched equals greedy one at a time for the text-only item
    single = vlm.prepare([None], [PROMPTS[1]], system="Answer briefly.")
    single_ids = vlm.generate_ids(single, max_new_tokens=6)
    n = min(single_ids.shape[1], new_ids.shape[1])
    assert torch.equal(single_ids[0, :n], new_ids[1, :n])
    texts = vlm.generate([tiny_image(0), None, tiny_image(1)], PROMPTS, max_new_tokens=4)
    assert len(texts) == 3
    assert all(PROMPTS[i] not in texts[i] for i in range(3))


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_resid_hook_equals_hidden_states(tiny_vlm, family):
    vlm = tiny_vlm(family)
    inputs = batch(vlm)
    layer = vlm.n_layers // 2
    with torch.no_grad():
        reference = vlm.model(**inputs, output_hidden_states=True).hidden_states[layer + 1]
    cached = run_with_cache(vlm, inputs, [vlm.hook_name(layer)])[vlm.hook_name(layer)]
    assert cached.shape == (3, inputs["input_ids"].shape[1], vlm.d_model)
    torch.testing.assert_close(cached, reference)
    pre = run_with_cache(vlm, inputs, [f"blocks.{layer + 1}.hook_resid_pre"])
    torch.testing.assert_close(pre[f"blocks.{layer + 1}.hook_resid_pre"], reference)


def test_early_stop_skips_deeper_layers(tiny_vlm):
    vlm = tiny_vlm("llava")
    inputs = batch(vlm)
    calls: list[int] = []

    def probe(layer: int):
        return lambda hidden: calls.append(layer)

    probes = {vlm.hook_name(i): probe(i) for i in range(4)}
    with hooked(vlm, probes):
        run_with_cache(vlm, inputs, [vlm.hook_name(1)])
    assert calls == [0, 1]


def test_hooks_are_removed_after_an_exception(tiny_vlm):
    vlm = tiny_vlm("llava")
    inputs = batch(vlm)
    with torch.no_grad():
        before = vlm.model(**inputs).logits
    with pytest.raises(ValueError), hooked(vlm, {vlm.hook_name(1): lambda h: h * 0}):
        raise ValueError("boom")
    with torch.no_grad():
        after = vlm.model(**inputs).logits
    torch.testing.assert_close(before, after)


def test_hook_replacement_changes_the_forward(tiny_vlm):
    vlm = tiny_vlm("qwen2_5_vl")
    inputs = batch(vlm)
    name = vlm.hook_name(1)
    shift = torch.randn(vlm.d_model)
    with hooked(vlm, {name: lambda h: h + shift}):
        shifted = run_with_cache(vlm, inputs, [name])[name]
    plain = run_with_cache(vlm, inputs, [name])[name]
    torch.testing.assert_close(shifted - plain, shift.expand_as(plain))


@pytest.mark.parametrize("family", ["llava", "gemma3"])
def test_adapter_free_reload_is_deterministic(tiny_model_dir, family):
    first = load_vlm(tiny_model_dir(family), device="cpu")
    second = load_vlm(tiny_model_dir(family), device="cpu")
    inputs = batch(first)
    with torch.no_grad():
        torch.testing.assert_close(first.model(**inputs).logits, second.model(**inputs).logits)


def test_families_are_a_registry_listed_in_order():
    assert isinstance(FAMILIES, Registry)
    assert FAMILIES.names() == ALL_FAMILIES
    assert get_family("gemma3") is FAMILIES["gemma3"] is FAMILIES.get("gemma3")
    app = Typer()
    register(app)
    lines = CliRunner().invoke(app, ["families"]).output.splitlines()
    order = ["llava", "qwen2_5_vl", "qwen3_vl", "gemma3", "idefics3", "mllama"]
    assert [line.split()[0] for line in lines] == order
    assert lines[-1].split()[1:] == ["MllamaForConditionalGeneration", "native", "hooks", "only"]


def test_importing_the_models_layer_loads_neither_torch_nor_transformers():
    code = (
        "import sys, interp.models, interp.models.tiny; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
