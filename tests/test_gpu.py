"""GPU checks (``pytest -m gpu``; ``scripts/gpu_check.sh`` runs them): bf16 end to end on a tiny
model of every family, SAE training on cuda, steering with the KV cache. They skip on a machine
without a CUDA GPU, and the default run leaves them out (``addopts``).

``VSFA_GPU_TEST_DEVICE=cpu`` runs the same checks on the CPU (bf16 there too), to check the
checks themselves on a machine without a GPU."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tests.conftest import ALL_FAMILIES

DEVICE = os.environ.get("VSFA_GPU_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        DEVICE == "cuda" and not torch.cuda.is_available(), reason="no CUDA GPU on this machine"
    ),
]


def _cuda_vlm(tiny_model_dir, family: str):
    from interp.models import load_vlm

    return load_vlm(tiny_model_dir(family), device=DEVICE, dtype="bfloat16")


def _cache(vlm, tmp_path, image):
    from interp.cache import CacheConfig, CachePrompt, cache_activations_for

    prompts = [
        CachePrompt(
            id=str(i),
            prompt=f"Describe the picture, number {i}.",
            image=str(image),
            response="A small square.",
        )  # fmt: skip
        for i in range(6)
    ]
    hook = vlm.hook_name(vlm.n_layers - 1)
    config = CacheConfig(model="tiny", prompts="-", hooks=[hook], out=str(tmp_path / "acts"),
                         batch_size=3, quiet=True)  # fmt: skip
    return cache_activations_for(vlm, prompts, config), hook


@pytest.fixture
def image_file(tmp_path):
    from interp.models.tiny import tiny_image

    path = tmp_path / "image.png"
    tiny_image(0).save(path)
    return path


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_bf16_end_to_end_on_cuda(family, tiny_model_dir, tmp_path, image_file):
    from PIL import Image

    from interp.cache.store import ActivationStore
    from interp.train import TrainConfig
    from interp.train.data import Example, answer_tokens, tokenize_examples
    from interp.train.model import prepare_model
    from interp.train.trainer import _backward

    vlm = _cuda_vlm(tiny_model_dir, family)
    assert vlm.device.type == DEVICE and next(vlm.model.parameters()).dtype == torch.bfloat16
    image = Image.open(image_file).convert("RGB")
    replies = vlm.generate([image, None], ["What is this?", "Say hello."], max_new_tokens=6)
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)

    folder, hook = _cache(vlm, tmp_path, image_file)
    acts = ActivationStore(folder).load(hook)
    assert acts.shape[1] == vlm.d_model and acts.shape[0] > 0 and torch.isfinite(acts).all()

    examples = [Example(id=str(i), image=str(image_file), prompt="What is it?",
                        response="A small square.") for i in range(2)]  # fmt: skip
    encoded, _ = tokenize_examples(vlm, examples, quiet=True)
    config = TrainConfig(model="tiny", out=str(tmp_path / "run"), data="-", method="lora")
    model = prepare_model(vlm, config)
    model.train()
    loss = _backward(model, vlm, [encoded], answer_tokens(encoded), None)
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and loss > 0
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_sae_training_on_cuda_matches_cpu(tiny_model_dir, tmp_path, image_file):
    from interp.sae import SAETrainConfig, train_sae

    vlm = _cuda_vlm(tiny_model_dir, "llava")
    folder, hook = _cache(vlm, tmp_path, image_file)
    fvu: dict[str, float] = {}
    for device in (DEVICE, "cpu"):
        config = SAETrainConfig(
            acts=[str(folder)], out=str(tmp_path / f"sae-{device}"), width=256, k=8, steps=40,
            batch_size=64, lr=1e-3, eval_prompts=0, device=device, quiet=True,
        )  # fmt: skip
        metrics = json.loads((train_sae(config) / "metrics.json").read_text())
        assert metrics["fast_step"]
        history = [h["fvu"] for h in metrics["history"]]
        assert history[-1] < history[0]
        fvu[device] = metrics["fvu"]
    assert fvu[DEVICE] == pytest.approx(fvu["cpu"], abs=0.05)


def test_steering_with_the_kv_cache_on_cuda(tiny_model_dir):
    from interp.steer.interventions import add_direction

    vlm = _cuda_vlm(tiny_model_dir, "llava")
    inputs = vlm.prepare([None, None], ["Tell me a story.", "Name a colour."])
    hook = vlm.hook_name(vlm.n_layers // 2)
    torch.manual_seed(0)
    direction = torch.randn(vlm.d_model, device=DEVICE)
    pad = vlm.tokenizer.pad_token_id

    def generate(use_cache: bool) -> torch.Tensor:
        with torch.no_grad():
            return vlm.model.generate(
                **inputs, max_new_tokens=12, min_new_tokens=12, do_sample=False,
                use_cache=use_cache, pad_token_id=pad,
            )  # fmt: skip

    plain = generate(True)
    with add_direction(vlm, hook, direction * 8.0, 1.0, positions="all"):
        cached, uncached = generate(True), generate(False)
    assert not torch.equal(plain, cached)  # the steering reaches the generated tokens
    prompt = inputs["input_ids"].shape[1]
    # bf16: the first steered tokens agree with and without the KV cache
    assert torch.equal(cached[:, : prompt + 4], uncached[:, : prompt + 4])
