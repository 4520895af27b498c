"""The fast SAE step's parts: the blocked TopK encoder and the fused Adam it trains with."""

from __future__ import annotations

import pytest
import torch
from sae_lens.saes.sae import TrainStepInput
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

import interp.sae.fast as fast

pytestmark = pytest.mark.usefixtures("one_thread")


def _sae(d_in: int = 16, d_sae: int = 128, k: int = 6) -> TopKTrainingSAE:
    torch.manual_seed(0)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k))
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(0, 0.1)
    return sae


def test_blocked_encoder_equals_one_dense_top_k(monkeypatch):
    # 3 rows per block: 100 rows take 34 blocks, the last one short
    monkeypatch.setattr(fast, "CHUNK_ELEMENTS", 3 * 128)
    torch.manual_seed(1)
    x, w, b = torch.randn(100, 16), torch.randn(16, 128), torch.randn(128)
    cols, scores = fast._encode_top_k(x, w, b, 6)
    dense = torch.addmm(b, x, w)
    expected = dense.topk(6, dim=-1).indices.sort(dim=-1).values
    assert torch.equal(cols, expected)
    assert torch.equal(cols, cols.sort(dim=-1).values)
    torch.testing.assert_close(scores, dense.gather(1, cols))


def test_blocked_fast_step_matches_sae_lens(monkeypatch):
    monkeypatch.setattr(fast, "CHUNK_ELEMENTS", 7 * 128)
    sae = _sae()
    x = torch.randn(50, 16) * 2
    step_input = TrainStepInput(
        sae_in=x, coefficients={}, dead_neuron_mask=None, n_training_steps=0, is_logging_step=False
    )
    reference = sae.training_forward_pass(step_input)
    reference.loss.backward()
    expected = {name: p.grad.clone() for name, p in sae.named_parameters()}
    sae.zero_grad()
    out = fast.fast_training_step(sae, x)
    out.loss.backward()
    torch.testing.assert_close(out.loss, reference.loss, rtol=1e-5, atol=1e-5)
    for name, param in sae.named_parameters():
        assert param.grad.is_contiguous(), name
        torch.testing.assert_close(param.grad, expected[name], rtol=1e-4, atol=1e-5, msg=name)


def _reference_columns(score: torch.Tensor, k: int) -> torch.Tensor:
    return score.topk(k, dim=-1).indices.sort(dim=-1).values


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_group_prefilter_is_exact_on_random_scores(seed):
    torch.manual_seed(seed)
    score = torch.randn(64, 8 * 6 * fast.GROUP) * torch.rand(64, 1) * 3
    assert torch.equal(fast._top_k_columns(score, 6), _reference_columns(score, 6))


def test_group_prefilter_is_exact_when_the_top_crowds_into_few_groups():
    torch.manual_seed(3)
    n, k = 8 * 5 * fast.GROUP, 5
    score = torch.randn(6, n)
    score[0] = torch.arange(n, dtype=torch.float32)  # the top k in the last group
    score[1] = torch.arange(n, 0, -1, dtype=torch.float32)  # ... in the first group
    score[2, 7 : 7 + k] += 100.0  # all k in one group
    score[3, :: fast.GROUP] += 50.0  # every group's maximum at its first column
    score[4] = -torch.rand(n)  # all negative
    score[5, 1] = 1e30
    assert torch.equal(fast._top_k_columns(score, k), _reference_columns(score, k))


def test_group_prefilter_with_ties_and_nan_keeps_topk_values():
    n, k = 8 * 4 * fast.GROUP, 4
    score = torch.zeros(3, n)  # row 0: all tied
    score[1] = torch.randn(n)
    score[1, 10] = float("nan")  # topk ranks NaN highest
    score[2, :: fast.GROUP] = 1.0  # many tied group maxima
    cols = fast._top_k_columns(score, k)
    assert cols.shape == (3, k) and all(len(set(row.tolist())) == k for row in cols)
    expected = score.topk(k, dim=-1).values
    picked = score.gather(1, cols).sort(dim=-1, descending=True).values
    torch.testing.assert_close(picked, expected, equal_nan=True)


def test_fast_step_with_the_group_prefilter_matches_sae_lens(monkeypatch):
    monkeypatch.setattr(fast, "GROUP", 4)  # 128 latents: 32 groups of 4 for k = 4
    monkeypatch.setattr(fast, "CHUNK_ELEMENTS", 9 * 128)
    sae = _sae(k=4)
    x = torch.randn(60, 16) * 2
    step_input = TrainStepInput(
        sae_in=x, coefficients={}, dead_neuron_mask=None, n_training_steps=0, is_logging_step=False
    )
    reference = sae.training_forward_pass(step_input)
    out = fast.fast_training_step(sae, x)
    torch.testing.assert_close(out.loss, reference.loss, rtol=1e-5, atol=1e-5)
    dense = torch.zeros(60, 128)
    dense[out.rows, out.cols] = out.acts
    torch.testing.assert_close(dense, reference.feature_acts.detach().to_dense())


def test_make_adam_is_fused_and_follows_plain_adam():
    plain_sae, fused_sae = _sae(), _sae()
    plain = torch.optim.Adam(plain_sae.parameters(), lr=1e-2)
    fused = fast.make_adam(fused_sae.parameters(), 1e-2)
    assert fused.param_groups[0]["fused"] is True
    torch.manual_seed(2)
    for _ in range(5):
        x = torch.randn(32, 16)
        for sae, optimizer in ((plain_sae, plain), (fused_sae, fused)):
            fast.fast_training_step(sae, x).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    for (name, a), b in zip(plain_sae.named_parameters(), fused_sae.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    assert plain.state_dict()["state"].keys() == fused.state_dict()["state"].keys()
    assert set(plain.state_dict()["state"][0]) == set(fused.state_dict()["state"][0])


def test_make_adam_falls_back_off_fused_devices():
    params = [torch.nn.Parameter(torch.zeros(3, device="meta"))]
    assert not fast.make_adam(params, 1e-3).param_groups[0]["fused"]


@pytest.mark.parametrize("batch_topk", [False, True])
def test_bf16_selection_keeps_exact_values_and_gradients_of_its_choice(batch_topk, monkeypatch):
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig

    monkeypatch.setattr(fast, "CHUNK_ELEMENTS", 16 * 128)
    torch.manual_seed(0)
    cls, cfg = (
        (BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig)
        if batch_topk
        else (TopKTrainingSAE, TopKTrainingSAEConfig)
    )
    sae = cls(cfg(d_in=16, d_sae=128, k=4, rescale_acts_by_decoder_norm=True))
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(0, 0.1)
        sae.W_dec.mul_(torch.rand(128, 1) + 0.5)
    x = torch.randn(40, 16) * 2
    low = fast.fast_training_step(sae, x, select_dtype=torch.bfloat16)
    low.loss.backward()
    grads = {name: p.grad.clone() for name, p in sae.named_parameters()}
    sae.zero_grad()
    exact = fast.fast_training_step(sae, x)
    # the bf16 choice agrees with float32's on most pairs ...
    chosen = set(zip(low.rows.tolist(), low.cols.tolist(), strict=True))
    reference = set(zip(exact.rows.tolist(), exact.cols.tolist(), strict=True))
    assert len(chosen & reference) >= 0.9 * len(reference)
    # ... and its values are float32's scores at the pairs it chose, not bf16 roundings
    scores = torch.addmm(sae.b_enc, x - sae.b_dec, sae.W_enc) * sae.W_dec.norm(dim=-1)
    torch.testing.assert_close(low.acts, scores[low.rows, low.cols].relu(), rtol=1e-5, atol=1e-6)
    # the gradients are float32's gradients for that selection: replay it through sae_lens's
    # decoder with autograd
    pre = torch.addmm(sae.b_enc, x - sae.b_dec, sae.W_enc)[low.rows, low.cols].relu()
    acts = torch.zeros(40, 128).index_put((low.rows, low.cols), pre)
    loss = (acts @ sae.W_dec + sae.b_dec - x).pow(2).sum(-1).mean()
    torch.testing.assert_close(low.loss, loss, rtol=1e-5, atol=1e-5)
    loss.backward()
    for name, param in sae.named_parameters():
        torch.testing.assert_close(grads[name], param.grad, rtol=1e-4, atol=1e-5, msg=name)
