"""The fast SAE step's parts: the blocked TopK encoder and the fused Adam it trains with."""

from __future__ import annotations

import pytest
import torch
from sae_lens.saes.sae import TrainStepInput
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

import interp.sae.fast as fast


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
