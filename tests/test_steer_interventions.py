"""Steering hooks on tiny random models: add / project out / ablate / clamp, positions, KV cache."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from PIL import Image

from interp.errors import VSFAError
from interp.hooks.native import hooked
from interp.steer import (
    ablate_latent,
    add_direction,
    add_latent,
    clamp_latent,
    latent_activation,
    project_out,
)

FAMILIES = ["llava", "qwen2_5_vl"]
LAYER = 1
HOOK = f"blocks.{LAYER}.hook_resid_post"
NEW = 5


def _inputs(vlm):
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    # different lengths, so the batch is left padded
    return vlm.prepare([image, None], ["what is in the picture?", "hello"])


def _generate(vlm, inputs, *, use_cache=True):
    return vlm.model.generate(
        **inputs,
        max_new_tokens=NEW,
        min_new_tokens=NEW,
        do_sample=False,
        use_cache=use_cache,
        pad_token_id=vlm.tokenizer.pad_token_id,
    )[:, inputs["input_ids"].shape[1] :]


@contextmanager
def _record(vlm, store):
    def fn(hidden):
        store.append(hidden.detach().clone())

    with hooked(vlm, {HOOK: fn}):
        yield


def _positions_diff(vlm, steer_cm, *, use_cache):
    """(new tokens, per-position steered-minus-unsteered residual at HOOK) over one generate.

    A recorder before the steering hook and one after it see the same forward, so their
    difference is exactly what the steering added, position by position.
    """
    before, after = [], []
    inputs = _inputs(vlm)
    with _record(vlm, before), steer_cm(), _record(vlm, after):
        new = _generate(vlm, inputs, use_cache=use_cache)
    if use_cache:
        diff = torch.cat([a - b for a, b in zip(after, before)], dim=1)
    else:
        diff = after[-1] - before[-1]  # the last pass covers every position
    return new, diff, inputs["input_ids"].shape[1]


def _unit(vlm, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(vlm.d_model, generator=g)
    return d / d.norm()


@pytest.mark.parametrize("family", FAMILIES)
def test_add_alpha_zero_leaves_generations_identical(tiny_vlm, family):
    vlm = tiny_vlm(family)
    inputs = _inputs(vlm)
    plain = _generate(vlm, inputs)
    with add_direction(vlm, HOOK, _unit(vlm) * 10, 0.0):
        steered = _generate(vlm, inputs)
    assert torch.equal(plain, steered)
    with add_direction(vlm, HOOK, _unit(vlm) * 50, 1.0):
        pushed = _generate(vlm, inputs)
    assert not torch.equal(plain, pushed)  # a big push does change something


@pytest.mark.parametrize(
    ("family", "positions"),
    [("llava", "all"), ("llava", "prompt"), ("llava", "generated"), ("qwen2_5_vl", "generated")],
)
def test_add_changes_residual_by_alpha_direction_at_chosen_positions(tiny_vlm, family, positions):
    vlm = tiny_vlm(family)
    direction, alpha = _unit(vlm, 1) * 3.0, 2.5
    runs = {}
    for use_cache in (True, False):
        runs[use_cache] = _positions_diff(
            vlm,
            lambda: add_direction(vlm, HOOK, direction, alpha, positions=positions),
            use_cache=use_cache,
        )
    (new_on, diff_on, prompt_len), (new_off, diff_off, _) = runs[True], runs[False]
    assert torch.equal(new_on, new_off)  # KV cache on and off agree on the steered tokens
    assert diff_on.shape == diff_off.shape == (2, prompt_len + NEW - 1, vlm.d_model)
    torch.testing.assert_close(diff_on, diff_off, atol=1e-5, rtol=0)
    expected = torch.zeros_like(diff_on)
    steered = {
        "all": slice(None),
        "prompt": slice(0, prompt_len),
        "generated": slice(prompt_len, None),
    }[positions]
    expected[:, steered] = alpha * direction
    torch.testing.assert_close(diff_on, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cache_kwarg", ["cache", "past_key_values"])
def test_position_tracker_reads_the_kv_cache_under_either_name(cache_kwarg):
    """transformers >= 5.24 passes the KV cache to ``forward`` as ``cache``, earlier releases as
    ``past_key_values``: a decode pass after a 5-token prompt starts at offset 5 either way."""
    from transformers import DynamicCache

    from interp.steer.interventions import _PositionTracker

    tracker = _PositionTracker()
    prompt = torch.arange(10).reshape(2, 5)
    tracker(None, (), {"input_ids": prompt, cache_kwarg: DynamicCache()})
    assert (tracker.offset, tracker.prompt_len) == (0, 5)
    cache = DynamicCache()
    cache.update(torch.zeros(2, 1, 5, 4), torch.zeros(2, 1, 5, 4), layer_idx=0)
    tracker(None, (), {"input_ids": prompt[:, -1:], cache_kwarg: cache})
    assert (tracker.offset, tracker.prompt_len) == (5, 5)


def _orthonormal_sae(vlm, d_sae=16, *, first=None, seed=0):
    """A ReLU SAE with orthonormal decoder rows and W_enc = W_dec^T (re-encoding is exact)."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(vlm.d_model, d_sae, generator=g)
    if first is not None:
        basis[:, 0] = first
    q, _ = torch.linalg.qr(basis)
    q = q * torch.sign(q[:, :1].T @ basis[:, :1]).clamp(min=-1)  # keep column 0's sign
    cfg = StandardSAEConfig(
        d_in=vlm.d_model, d_sae=d_sae, metadata=SAEMetadata(hook_name=HOOK, model_name="tiny")
    )
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.W_dec.copy_(q.T)
        sae.W_enc.copy_(q)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def _mean_residual(vlm):
    from interp.hooks.native import run_with_cache

    return run_with_cache(vlm, _inputs(vlm), [HOOK])[HOOK].mean(dim=(0, 1))


@pytest.mark.parametrize("family", FAMILIES)
def test_ablate_removes_the_latent_and_keeps_the_rest(tiny_vlm, family):
    vlm = tiny_vlm(family)
    sae = _orthonormal_sae(vlm, first=_mean_residual(vlm))
    before, after = [], []
    inputs = _inputs(vlm)
    with _record(vlm, before), ablate_latent(vlm, sae, 0), _record(vlm, after):
        vlm.model(**inputs)
    x, y = before[0], after[0]
    acts_x = sae.encode(x)
    assert (acts_x[..., 0] > 0).float().mean() > 0.5  # the planted latent fires
    acts_y = sae.encode(y)
    assert acts_y[..., 0].abs().max() < 1e-4  # re-encoding: the latent is gone
    # exactly its own contribution was subtracted; the other latents are untouched
    torch.testing.assert_close(y - x, -acts_x[..., :1] * sae.W_dec[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(acts_y[..., 1:], acts_x[..., 1:], atol=1e-4, rtol=0)


def _as_topk(sae):
    """The same weights as a TopK SAE with k = d_sae (no competition): the sae_lens encode path."""
    from sae_lens import TopKSAE, TopKSAEConfig

    cfg = TopKSAEConfig(
        d_in=sae.cfg.d_in, d_sae=sae.cfg.d_sae, k=sae.cfg.d_sae, metadata=sae.cfg.metadata
    )
    topk = TopKSAE(cfg)
    topk.load_state_dict(sae.state_dict())
    return topk


@pytest.mark.parametrize("kind", ["relu", "topk"])
def test_ablate_and_clamp_a_set_of_latents_together(tiny_vlm, kind):
    vlm = tiny_vlm("llava")
    sae = _orthonormal_sae(vlm, first=_mean_residual(vlm))
    sae = sae if kind == "relu" else _as_topk(sae)
    chosen = [0, 3, 5]
    rest = [i for i in range(16) if i not in chosen]
    inputs = _inputs(vlm)
    before, after = [], []
    with _record(vlm, before), ablate_latent(vlm, sae, chosen), _record(vlm, after):
        vlm.model(**inputs)
    x, y = before[0], after[0]
    acts_x, acts_y = sae.encode(x), sae.encode(y)
    assert (acts_x[..., chosen] > 0).any(-1).float().mean() > 0.5  # the set fires
    assert acts_y[..., chosen].abs().max() < 1e-4  # every latent of the set is gone ...
    expected = -acts_x[..., chosen] @ sae.W_dec[chosen]  # ... by exactly their contributions
    torch.testing.assert_close(y - x, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(acts_y[..., rest], acts_x[..., rest], atol=1e-4, rtol=0)

    after = []
    with clamp_latent(vlm, sae, chosen, 2.5), _record(vlm, after):
        vlm.model(**inputs)
    reread = latent_activation(sae, after[0], chosen)
    assert reread.shape == (*x.shape[:-1], 3)
    fired = acts_x[..., chosen] > 0  # a ReLU hides the clamp where a latent was negative
    expected = torch.full_like(reread[fired], 2.5)
    torch.testing.assert_close(reread[fired], expected, atol=1e-4, rtol=0)


def test_add_a_set_adds_the_sum_of_decoder_rows(tiny_vlm):
    vlm = tiny_vlm("llava")
    sae = _orthonormal_sae(vlm)
    before, after = [], []
    with _record(vlm, before), add_latent(vlm, sae, [2, 7], 1.5), _record(vlm, after):
        vlm.model(**_inputs(vlm))
    expected = 1.5 * (sae.W_dec[2] + sae.W_dec[7])
    torch.testing.assert_close(after[0] - before[0], expected.expand_as(before[0]))


@pytest.mark.parametrize("family", FAMILIES)
def test_clamp_sets_the_latent(tiny_vlm, family):
    vlm = tiny_vlm(family)
    sae = _orthonormal_sae(vlm, first=_mean_residual(vlm))
    before, after = [], []
    with _record(vlm, before), clamp_latent(vlm, sae, 0, 7.5), _record(vlm, after):
        vlm.model(**_inputs(vlm))
    acts = latent_activation(sae, before[0], 0)
    # the SAE's reconstruction now carries the latent at 7.5 ...
    torch.testing.assert_close(
        after[0] - before[0], (7.5 - acts).unsqueeze(-1) * sae.W_dec[0], atol=1e-5, rtol=0
    )
    # ... so re-encoding reads 7.5 wherever the latent was active (a ReLU hides the rest)
    fired = acts > 0
    assert fired.float().mean() > 0.5
    reread = latent_activation(sae, after[0], 0)
    expected = torch.full_like(reread[fired], 7.5)
    torch.testing.assert_close(reread[fired], expected, atol=1e-4, rtol=0)


def test_project_out_and_add_latent(tiny_vlm):
    vlm = tiny_vlm("llava")
    sae = _orthonormal_sae(vlm)
    direction = _unit(vlm, 3) * 4
    after = []
    with project_out(vlm, HOOK, direction), _record(vlm, after):
        vlm.model(**_inputs(vlm))
    assert (after[0] @ (direction / direction.norm())).abs().max() < 1e-4
    before, after = [], []
    with _record(vlm, before), add_latent(vlm, sae, 2, 3.0), _record(vlm, after):
        vlm.model(**_inputs(vlm))
    torch.testing.assert_close(after[0] - before[0], (3.0 * sae.W_dec[2]).expand_as(before[0]))


def _hook_count(vlm):
    from interp.steer.interventions import _outer_module

    layers = sum(len(layer._forward_hooks) + len(layer._forward_pre_hooks) for layer in vlm.layers)
    return layers + len(_outer_module(vlm)._forward_pre_hooks)


def test_hooks_removed_after_exit_even_on_exception(tiny_vlm):
    vlm = tiny_vlm("llava")
    sae = _orthonormal_sae(vlm)
    start = _hook_count(vlm)
    inputs = _inputs(vlm)
    plain = _generate(vlm, inputs)
    steer = add_direction(vlm, HOOK, _unit(vlm) * 50, 1.0, positions="generated")
    with pytest.raises(RuntimeError, match="boom"), steer:
        assert _hook_count(vlm) == start + 2
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"), ablate_latent(vlm, sae, 1, positions="prompt"):
        raise RuntimeError("boom")
    assert _hook_count(vlm) == start
    assert torch.equal(_generate(vlm, inputs), plain)


def test_bad_input_errors(tiny_vlm):
    vlm = tiny_vlm("llava")
    sae = _orthonormal_sae(vlm)
    with pytest.raises(VSFAError, match="out of range"):
        ablate_latent(vlm, sae, 16)
    with pytest.raises(VSFAError, match="out of range"):
        clamp_latent(vlm, sae, -1, 1.0)
    with pytest.raises(VSFAError, match="out of range"):
        ablate_latent(vlm, sae, [1, 16])
    with pytest.raises(VSFAError, match="repeat"):
        ablate_latent(vlm, sae, [1, 2, 1])
    with pytest.raises(VSFAError, match="at least one"):
        add_latent(vlm, sae, [], 1.0)
    with pytest.raises(VSFAError, match="decoder layers"):
        ablate_latent(vlm, sae, 0, hook_name="blocks.99.hook_resid_post")
    with pytest.raises(VSFAError, match="unknown positions"):
        add_direction(vlm, HOOK, _unit(vlm), 1.0, positions="middle").__enter__()
    with pytest.raises(VSFAError, match="d_model"):
        add_direction(vlm, HOOK, torch.ones(vlm.d_model + 1), 1.0)
    wide = _orthonormal_sae(vlm)
    wide.cfg.d_in = vlm.d_model * 2
    with pytest.raises(VSFAError, match="d_model"):
        ablate_latent(vlm, wide, 0)


def test_steering_composes_with_a_lora_adapter(tiny_model_dir, tmp_path):
    """Through a PeftModel (its generate calls the wrapped model), positions still split right
    and the adapter stays active under the hook."""
    from peft import LoraConfig, get_peft_model

    from interp.models import load_vlm

    base_dir = tiny_model_dir("llava")
    donor = load_vlm(base_dir, device="cpu", dtype="float32")
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    get_peft_model(donor.model, lora).save_pretrained(tmp_path / "adapter")
    vlm = load_vlm(base_dir, device="cpu", dtype="float32", adapter=tmp_path / "adapter")
    plain = load_vlm(base_dir, device="cpu", dtype="float32")
    inputs = _inputs(vlm)
    assert not torch.equal(_generate(vlm, inputs), _generate(plain, inputs))  # adapter is on
    direction = _unit(vlm, 5) * 2.0
    new, diff, prompt_len = _positions_diff(
        vlm, lambda: add_direction(vlm, HOOK, direction, 1.5, positions="generated"), use_cache=True
    )
    expected = torch.zeros_like(diff)
    expected[:, prompt_len:] = 1.5 * direction
    torch.testing.assert_close(diff, expected, atol=1e-5, rtol=0)
