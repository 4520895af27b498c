"""The SAEs the workbench writes work in sae_lens as saved: ``SAE.load_from_disk``, sae_lens's own
``ActivationsStore.from_sae`` and ``run_evals``, through TransformerBridge, on the organism.

No metadata is patched: the only inputs besides the saved folder are the model (booted in the
bridge from the metadata's family) and the token rows sae_lens reads.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from sae_lens import SAE
from sae_lens.evals import EvalConfig, run_evals
from sae_lens.training.activation_scaler import ActivationScaler
from sae_lens.training.activations_store import ActivationsStore

from interp import organism
from interp.cache import CacheConfig, cache_activations_for, load_prompts
from interp.hooks.bridge import boot_bridge
from interp.models import load_vlm
from interp.sae import train_sae
from interp.sae.config import SAETrainConfig
from interp.sae.metadata import token_dataset

SHIPPED = Path(__file__).resolve().parents[1] / "sae_checkpoints" / "organism-l2-topk384"
HOOK = "blocks.2.hook_resid_post"
REQUIRED = (
    "model_name",
    "model_path",
    "model_class_name",
    "hook_name",
    "prepend_bos",
    "context_size",
    "dataset_path",
    "training_tokens",
)


@pytest.fixture(scope="module")
def organism_acts(tmp_path_factory):
    """A cache of the organism's text-only suite prompts (sae_lens feeds tokens, no images)."""
    vlm = load_vlm(organism.base_model_dir(), device="cpu")
    prompts = [p for p in load_prompts("organism") if p.image is None][:32]
    out = tmp_path_factory.mktemp("organism-acts") / "base"
    config = CacheConfig(model="organism", prompts="-", hooks=[HOOK], out=str(out), quiet=True)
    return cache_activations_for(vlm, prompts, config)


@pytest.fixture(scope="module")
def bridge():
    return boot_bridge(load_vlm(organism.base_model_dir(), device="cpu"))


def _sae_lens_evals(sae, bridge, acts) -> dict:
    dataset = token_dataset(sae.cfg.metadata, stores=[acts])
    store = ActivationsStore.from_sae(
        bridge,
        sae,
        dataset,
        streaming=False,
        store_batch_size_prompts=4,
        n_batches_in_buffer=2,
        train_batch_size_tokens=64,
        total_tokens=10_000,
    )
    config = EvalConfig(
        batch_size_prompts=4,
        n_eval_reconstruction_batches=2,
        n_eval_sparsity_variance_batches=2,
        compute_kl=True,
        compute_ce_loss=True,
    )
    metrics, _ = run_evals(sae, store, bridge, ActivationScaler(), config)
    return {k: v for group in metrics.values() for k, v in group.items()}


def test_shipped_sae_runs_sae_lens_evals_as_saved(bridge, organism_acts):
    saved = json.loads((SHIPPED / "cfg.json").read_text())["metadata"]
    assert all(saved.get(key) is not None for key in REQUIRED)
    assert "neuronpedia_id" in saved
    sae = SAE.load_from_disk(str(SHIPPED))
    assert sae.cfg.metadata.model_class_name == "LlavaForConditionalGeneration"
    assert Path(sae.cfg.metadata.model_path).name == organism.base_model_dir().name
    metrics = _sae_lens_evals(sae, bridge, organism_acts)
    # a trained SAE keeps most of the model's behaviour: far closer than zero-ablating the layer
    assert metrics["kl_div_with_sae"] < 0.5 * metrics["kl_div_with_ablation"]
    assert metrics["kl_div_score"] > 0.5


def test_a_freshly_trained_sae_runs_sae_lens_evals(bridge, organism_acts, tmp_path):
    config = SAETrainConfig(
        acts=[str(organism_acts)],
        out=str(tmp_path / "sae"),
        width=192,
        k=8,
        steps=30,
        batch_size=64,
        eval_prompts=0,
        device="cpu",
        quiet=True,
    )
    out = train_sae(config)
    saved = json.loads((out / "cfg.json").read_text())["metadata"]
    assert all(saved.get(key) is not None for key in REQUIRED)
    assert saved["model_name"] == organism.base_model_dir().name
    assert Path(saved["model_path"]).resolve() == organism.base_model_dir().resolve()
    assert saved["hook_name"] == HOOK and saved["training_tokens"] == 30 * 64
    assert saved["prepend_bos"] is False  # the organism's chat template starts without BOS
    assert saved["context_size"] == max(
        len(json.loads(line)["token_ids"])
        for line in (Path(organism_acts) / "prompts.jsonl").read_text().splitlines()
    )
    assert saved["neuronpedia_id"] is None and saved["adapters"] == [None]
    metrics = _sae_lens_evals(SAE.load_from_disk(str(out)), bridge, organism_acts)
    for key in ("kl_div_with_sae", "ce_loss_with_sae", "ce_loss_without_sae"):
        assert math.isfinite(metrics[key])
    assert metrics["total_tokens_eval_reconstruction"] > 0
