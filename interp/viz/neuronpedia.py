"""Latent pages in Neuronpedia's feature JSON format (the batch files SAEDashboard's Neuronpedia
runner writes and Neuronpedia imports).

Each ``batch-N.json`` holds ``model_id``, ``layer``, ``sae_set``, ``settings`` and ``features``;
a feature holds ``feature_index``, ``frac_nonzero``, the decoder's promoted / suppressed tokens
(``pos_str`` / ``pos_values``, ``neg_str`` / ``neg_values``: decoder row times unembedding), the
histograms of its nonzero activations (``freq_hist_data_bar_values`` / ``_heights``) and of its
logit effects (``logits_hist_data_*``) and ``activations``: whole prompts as ``tokens`` with one
activation per token (``values``). The top examples carry ``bin_min`` -1 and ``bin_contains`` -1;
the quantile examples carry their interval and the share of firing prompts in it. The SAE's
metadata fills ``model_id`` (its Neuronpedia id, else ``model_name``), ``layer`` (from the hook)
and ``dataset``; image placeholder tokens appear as their token text.

Everything is recomputed from the SAE and the activation folders it was trained on, so the
export does not depend on what the latent diff kept.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp.artifacts import read_json, write_json_atomic
from interp.errors import VSFAError

FEATURES_PER_BATCH = 128
"""Features per ``batch-N.json`` (SAEDashboard's default)."""


def _r(values: Any) -> list[float]:
    return [round(float(v), 3) for v in np.asarray(values, dtype=np.float64).ravel()]


def _first_existing(candidates: Sequence[Path]) -> Path | None:
    return next((path for path in candidates if path.exists()), None)


def _bases(sae_dir: Path, run_dir: Path | None) -> list[Path]:
    return [Path.cwd(), *([run_dir] if run_dir else []), sae_dir.parent, sae_dir.parent.parent]


def resolve_acts(sae: Any, sae_dir: Path, run_dir: Path | None = None) -> list[Path]:
    """The activation folders of the SAE's ``dataset_path`` that exist here (relative paths
    tried from the working folder, the run folder and the SAE's folders), else every cache
    folder under ``run_dir`` holding the SAE's hook."""
    hook = sae.cfg.metadata.hook_name
    named = [p for p in str(sae.cfg.metadata.dataset_path or "").split(",") if p]
    found = [_first_existing([base / name for base in _bases(sae_dir, run_dir)]) for name in named]
    folders = [path for path in found if path is not None and (path / "manifest.json").exists()]
    if not folders and run_dir is not None:
        for manifest in sorted(run_dir.rglob("manifest.json")):
            data = read_json(manifest)
            if data.get("stage") == "cache" and hook in (data.get("hook_names") or []):
                folders.append(manifest.parent)
    if not folders:
        raise VSFAError(
            f"no activation folder of the SAE {sae_dir} is at hand (its dataset_path names "
            f"{named or 'none'}, and the run folder holds no cache of {hook})"
        )
    return folders


def _model_path(sae: Any, sae_dir: Path, run_dir: Path | None) -> str:
    name = str(sae.cfg.metadata.model_path or sae.cfg.metadata.model_name or "")
    path = _first_existing([base / name for base in _bases(sae_dir, run_dir)]) if name else None
    if path is None and not name:
        raise VSFAError(f"the SAE {sae_dir} names no model (cfg.json metadata model_path)")
    return str(path) if path is not None else name


@torch.no_grad()
def _latent_acts(sae: Any, folders: Sequence[Path], latents: list[int]) -> dict[str, Any]:
    """Activations of ``latents`` on every cached row, with each row's prompt and token."""
    from interp.cache.store import ActivationStore

    hook = sae.cfg.metadata.hook_name
    chunks, prompts, positions = [], [], []
    records: list[list[int]] = []
    index = torch.tensor(latents)
    for folder in folders:
        store = ActivationStore(folder)
        offset = len(records)
        records.extend(record["token_ids"] for record in store.prompts)
        for shard in store.iter_shards(hook):
            encoded = sae.encode(shard.to(sae.W_dec.device, sae.W_dec.dtype))
            encoded = encoded.to_dense() if encoded.is_sparse else encoded
            chunks.append(encoded[:, index].float().cpu())
        tokens = store.tokens
        prompts.append(tokens["prompt_index"] + offset)
        positions.append(tokens["position"])
    return {
        "acts": torch.cat(chunks).numpy(),
        "prompt": torch.cat(prompts).numpy(),
        "position": torch.cat(positions).numpy(),
        "records": records,
    }


def _histogram(values: np.ndarray, bins: int = 32) -> tuple[list[float], list[float]]:
    if values.size == 0:
        return [], []
    heights, edges = np.histogram(values, bins=bins)
    return _r((edges[:-1] + edges[1:]) / 2), [float(h) for h in heights]


class _Tokens:
    """Token text per id, decoded once."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.cache = tokenizer, {}

    def __call__(self, ids: Sequence[int]) -> list[str]:
        for token in ids:
            if token not in self.cache:
                self.cache[token] = self.tokenizer.decode([int(token)])
        return [self.cache[token] for token in ids]


def _activation(data: dict, column: int, prompt: int, text: _Tokens, **bin_info: float) -> dict:
    ids = data["records"][prompt]
    values = np.zeros(len(ids))
    rows = data["prompt"] == prompt
    values[data["position"][rows]] = data["acts"][rows, column]
    return {**bin_info, "tokens": text(ids), "values": _r(values)}


def _examples(data: dict, column: int, text: _Tokens, top: int, bins: int) -> list[dict]:
    """Top prompts (one per distinct token sequence), then up to ``top // 2`` per quantile bin."""
    acts = data["acts"][:, column]
    firing = acts > 0
    best: dict[tuple, tuple[float, int]] = {}
    for prompt in np.unique(data["prompt"][firing]):
        value = float(acts[data["prompt"] == prompt].max())
        key = tuple(data["records"][prompt])
        if key not in best or value > best[key][0]:
            best[key] = (value, int(prompt))
    ranked = sorted(best.values(), reverse=True)
    if not ranked:
        return []
    peak = ranked[0][0]
    out = [
        _activation(data, column, p, text, bin_min=-1, bin_max=peak, bin_contains=-1)
        for _, p in ranked[:top]
    ]
    edges = np.linspace(0.0, peak, bins + 1)
    maxima = np.array([value for value, _ in ranked])
    for low, high in zip(edges[:-1], edges[1:]):
        inside = [p for value, p in ranked[top:] if low < value <= high]
        share = float(((maxima > low) & (maxima <= high)).mean())
        for prompt in inside[: max(top // 2, 1)]:
            out.append(
                _activation(
                    data,
                    column,
                    prompt,
                    text,
                    bin_min=float(low),
                    bin_max=float(high),
                    bin_contains=share,
                )  # fmt: skip
            )
    return out


def export_neuronpedia(
    sae_dir: str | os.PathLike,
    out: str | os.PathLike,
    latents: Sequence[int],
    *,
    acts: Sequence[str | os.PathLike] | None = None,
    run_dir: str | os.PathLike | None = None,
    top: int = 20,
    bins: int = 5,
    n_logits: int = 10,
) -> list[Path]:
    """Write the latents' pages as Neuronpedia batch files into ``out``; returns their paths."""
    from interp.models import load_vlm
    from interp.sae import load_sae

    sae_dir, run = Path(sae_dir), Path(run_dir) if run_dir else None
    sae = load_sae(sae_dir)
    meta = sae.cfg.metadata
    latents = [int(i) for i in dict.fromkeys(latents)]
    bad = [i for i in latents if not 0 <= i < sae.cfg.d_sae]
    if bad or not latents:
        raise VSFAError(f"latents {bad or latents}: expected indices in 0..{sae.cfg.d_sae - 1}")
    folders = [Path(a) for a in acts] if acts else resolve_acts(sae, sae_dir, run)
    vlm = load_vlm(_model_path(sae, sae_dir, run), device="cpu")
    text = _Tokens(vlm.tokenizer)
    data = _latent_acts(sae, folders, latents)
    unembed = vlm.unembedding().detach().float()
    effects = (sae.W_dec[latents].detach().float().cpu() @ unembed.T).numpy()
    features = []
    for column, latent in enumerate(latents):
        acts_col = data["acts"][:, column]
        order = np.argsort(effects[column])
        bar_values, bar_heights = _histogram(acts_col[acts_col > 0])
        logit_values, logit_heights = _histogram(effects[column])
        features.append(
            {
                "feature_index": latent,
                "frac_nonzero": float((acts_col > 0).mean()),
                "pos_str": text([int(t) for t in order[::-1][:n_logits]]),
                "pos_values": _r(effects[column][order[::-1][:n_logits]]),
                "neg_str": text([int(t) for t in order[:n_logits]]),
                "neg_values": _r(effects[column][order[:n_logits]]),
                "freq_hist_data_bar_values": bar_values,
                "freq_hist_data_bar_heights": bar_heights,
                "logits_hist_data_bar_values": logit_values,
                "logits_hist_data_bar_heights": logit_heights,
                "num_tokens_for_dashboard": int(len(acts_col)),
                "n_prompts_total": len(data["records"]),
                "n_tokens_in_prompt": meta.context_size,
                "dataset": ",".join(str(f) for f in folders),
                "activations": _examples(data, column, text, top, bins),
            }
        )
    layer = re.match(r"blocks\.(\d+)\.", str(meta.hook_name or ""))
    np_id = str(meta.neuronpedia_id or "")
    model_id, _, sae_set = np_id.partition("/") if "/" in np_id else (meta.model_name, "", "")
    header = {
        "model_id": model_id or meta.model_name,
        "layer": int(layer.group(1)) if layer else 0,
        "sae_set": sae_set or sae_dir.name,
        "settings": {"n_batches_to_sample_from": 0, "n_prompt_to_select": 0},
    }
    out = Path(out)
    paths = []
    for start in range(0, len(features), FEATURES_PER_BATCH):
        batch = {**header, "features": features[start : start + FEATURES_PER_BATCH]}
        path = out / f"batch-{start // FEATURES_PER_BATCH}.json"
        paths.append(write_json_atomic(path, batch))
    return paths


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike) -> list[Path]:
    """Export the latents a run's ``latents.json`` selects and lists (selected first, then the
    runners-up and the listed ones) for its SAE."""
    run = Path(run_dir)
    found = sorted(run.rglob("latents.json"), key=lambda p: len(p.parts))
    if not found:
        raise VSFAError(f"--neuronpedia: {run} holds no latents.json (run vsfa latents diff)")
    latents = read_json(found[0])
    selection = latents.get("selected") or {}
    chosen = [*(selection.get("latents") or []), *(selection.get("runners_up") or [])]
    listed = [entry["index"] for entry in latents.get("latents") or [] if "index" in entry]
    sae = latents.get("sae")
    if not sae:
        raise VSFAError(f"--neuronpedia: {found[0]} names no SAE ('sae')")
    sae_dir = _first_existing([Path(sae), run / sae, found[0].parent / sae]) or Path(sae)
    return export_neuronpedia(sae_dir, out, [*chosen, *listed], run_dir=run)
