"""SAE quality: reconstruction on cached activations, and the model's loss with the SAE spliced in.

Reconstruction metrics (on up to ``eval_rows`` shuffled activation rows):
``fvu`` (residual variance over total variance), ``explained_variance`` (1 - fvu), ``mse``,
``l0`` (mean active latents per token), ``dead_fraction`` (latents that never fire on those rows),
``dense_fraction`` (latents firing on more than 10% of them).

Splice metrics (on the first ``eval_prompts`` cached prompts of each folder, teacher-forced with
their responses): next-token cross-entropy of the clean model, with the hook's output replaced by
the SAE reconstruction, and with it zero-ablated; ``ce_loss_increase`` = spliced - clean,
``ce_loss_recovered`` = (zero - spliced) / (zero - clean), and ``kl`` = KL(clean || spliced) per
token. Image-token positions are excluded from the loss (they are not predicted).

Quality warnings (:func:`quality_warnings`, written as ``warnings`` into the metrics and printed
by ``vsfa sae train``): an SAE with ``fvu`` >= :data:`MAX_FVU` reconstructs no better than the
mean activation, and one with more than :data:`MAX_DEAD_FRACTION` dead latents wastes most of
its width; latents read from either are not evidence of anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from interp.cache.store import ActivationStore
from interp.cache.stream import ActivationStream
from interp.errors import VSFAError
from interp.hooks.native import hooked

DENSE_THRESHOLD = 0.1
MAX_FVU = 1.0
MAX_DEAD_FRACTION = 0.5


def quality_warnings(metrics: dict[str, Any]) -> list[str]:
    """One line per failed quality floor: FVU >= 1, or more than half the latents dead."""
    found = []
    fvu, dead = metrics.get("fvu"), metrics.get("dead_fraction")
    if isinstance(fvu, int | float) and fvu >= MAX_FVU:
        found.append(
            f"WARNING: FVU {fvu:.3g} >= {MAX_FVU:g}: the SAE reconstructs its activations no "
            "better than their mean; its latents are not evidence (train longer or check the "
            "hook)"
        )
    if isinstance(dead, int | float) and dead > MAX_DEAD_FRACTION:
        found.append(
            f"WARNING: {100 * dead:.0f}% of the latents are dead (> {100 * MAX_DEAD_FRACTION:g}%"
            "): the SAE uses a fraction of its width (resample dead latents, lower the L1 or "
            "raise k)"
        )
    return found


@torch.no_grad()
def reconstruction_metrics(
    sae: Any,
    stores: Sequence[ActivationStore],
    hook_name: str,
    *,
    eval_rows: int = 16384,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = 4096,
) -> dict[str, float]:
    stream = ActivationStream(
        [s.path for s in stores],
        hook_name,
        batch_size=batch_size,
        buffer_rows=max(batch_size, min(eval_rows, 262144)),
        device=device,
        seed=seed + 7919,  # not the training order
        epochs=1,
    )
    n, sq_err = 0, 0.0
    sum_x = torch.zeros(stream.d_model, dtype=torch.float64, device=device)
    sum_x2 = torch.zeros((), dtype=torch.float64, device=device)
    fires = torch.zeros(sae.cfg.d_sae, dtype=torch.float64, device=device)
    active = 0.0
    dtype = sae.W_dec.dtype
    for x in stream:
        x = x[: eval_rows - n]
        acts = sae.encode(x.to(dtype))
        recon = sae.decode(acts).float()
        sq_err += float((recon - x).pow(2).sum())
        sum_x += x.double().sum(0)
        sum_x2 += x.double().pow(2).sum()
        firing = acts != 0
        fires += firing.sum(0).double()
        active += float(firing.sum())
        n += x.shape[0]
        if n >= eval_rows:
            break
    if n == 0:
        raise VSFAError(f"no activation rows to evaluate the SAE on in {stream.stores[0].path}")
    total_var = float(sum_x2 - sum_x.pow(2).sum() / n)
    fvu = sq_err / max(total_var, 1e-12)
    frequency = fires / n
    return {
        "fvu": fvu,
        "explained_variance": 1.0 - fvu,
        "mse": sq_err / (n * stream.d_model),
        "l0": active / n,
        "dead_fraction": float((frequency == 0).double().mean()),
        "dense_fraction": float((frequency > DENSE_THRESHOLD).double().mean()),
        "eval_rows": n,
    }


def _splice_inputs(vlm: Any, records: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    from interp.images import open_image

    images = [open_image(r["image"]) if r.get("image") else None for r in records]
    responses = [r.get("response") for r in records]
    return vlm.prepare(
        images,
        [r["prompt"] for r in records],
        responses=responses if any(x is not None for x in responses) else None,
    )


@torch.no_grad()
def splice_metrics(
    sae: Any,
    vlm: Any,
    stores: Sequence[ActivationStore],
    hook_name: str,
    *,
    eval_prompts: int = 16,
    batch_size: int = 4,
) -> dict[str, float]:
    """CE loss and KL with the SAE reconstruction spliced in at ``hook_name``."""
    if sae.cfg.d_in != vlm.d_model:
        raise VSFAError(
            f"SAE d_in {sae.cfg.d_in} does not match {vlm.name_or_path} d_model {vlm.d_model}"
        )
    records = [r for store in stores for r in store.prompts[:eval_prompts]]
    image_ids = torch.tensor(sorted(vlm.image_token_ids()) or [-1], device=vlm.device)
    totals = {"clean": 0.0, "spliced": 0.0, "zero": 0.0, "kl": 0.0}
    count = 0
    sae_dtype = sae.W_dec.dtype

    def splice(hidden: torch.Tensor) -> torch.Tensor:
        recon = sae.decode(sae.encode(hidden.to(sae_dtype)))
        return recon.to(hidden.dtype)

    for start in range(0, len(records), batch_size):
        inputs = _splice_inputs(vlm, records[start : start + batch_size])
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask", torch.ones_like(ids)).bool()
        target_mask = (mask[:, 1:] & mask[:, :-1] & ~torch.isin(ids[:, 1:], image_ids)).flatten()
        targets = ids[:, 1:].flatten()[target_mask]

        def log_probs(hooks: dict[str, Any], inputs=inputs, target_mask=target_mask):
            with hooked(vlm, hooks):
                logits = vlm.model(**inputs, use_cache=False).logits[:, :-1].float()
            return logits.flatten(0, 1)[target_mask].log_softmax(-1)

        clean = log_probs({})
        spliced = log_probs({hook_name: splice})
        zero = log_probs({hook_name: torch.zeros_like})
        totals["clean"] += float(F.nll_loss(clean, targets, reduction="sum"))
        totals["spliced"] += float(F.nll_loss(spliced, targets, reduction="sum"))
        totals["zero"] += float(F.nll_loss(zero, targets, reduction="sum"))
        totals["kl"] += float((clean.exp() * (clean - spliced)).sum())
        count += int(targets.numel())
    if count == 0:
        raise VSFAError("no text tokens to measure the spliced next-token loss on")
    clean, spliced, zero = (totals[k] / count for k in ("clean", "spliced", "zero"))
    recovered = (zero - spliced) / (zero - clean) if abs(zero - clean) > 1e-9 else None
    return {
        "ce_loss_clean": clean,
        "ce_loss_spliced": spliced,
        "ce_loss_zero_ablation": zero,
        "ce_loss_increase": spliced - clean,
        "ce_loss_recovered": recovered,
        "kl": totals["kl"] / count,
        "splice_tokens": count,
    }


def evaluate_sae(
    sae: Any,
    stores: Sequence[ActivationStore],
    hook_name: str,
    *,
    vlm: Any = None,
    eval_rows: int = 16384,
    eval_prompts: int = 16,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Reconstruction metrics, plus splice metrics when a model is given or loadable."""
    for store in stores:
        if sae.cfg.d_in != store.d_model:
            raise VSFAError(
                f"SAE d_in is {sae.cfg.d_in} but {store.path} holds d_model {store.d_model}"
            )
    metrics: dict[str, Any] = reconstruction_metrics(
        sae, stores, hook_name, eval_rows=eval_rows, seed=seed, device=device
    )
    metrics.update(ce_loss_increase=None, kl=None, warnings=quality_warnings(metrics))
    if eval_prompts <= 0:
        return metrics
    for store in stores:
        # each folder is spliced through its own model (base, or base + adapter)
        model = vlm
        if model is None or (store.manifest.get("adapter") != getattr(model, "adapter_path", None)):
            model = _load_model_for(store, device)
            if model is None:
                metrics["splice_note"] = f"could not load {store.manifest.get('model')!r}"
                return metrics
        part = splice_metrics(sae, model, [store], hook_name, eval_prompts=eval_prompts)
        metrics.setdefault("splice_by_folder", {})[str(store.path)] = part
    parts = list(metrics["splice_by_folder"].values())
    for key in ("ce_loss_clean", "ce_loss_spliced", "ce_loss_increase", "kl"):
        metrics[key] = sum(p[key] for p in parts) / len(parts)
    metrics["splice_tokens"] = sum(p["splice_tokens"] for p in parts)
    return metrics


def _load_model_for(store: ActivationStore, device: torch.device | str) -> Any:
    from interp.models import load_vlm

    try:
        return load_vlm(
            store.manifest["model"], adapter=store.manifest.get("adapter"), device=str(device)
        )
    except (VSFAError, OSError):
        return None
