"""The SAE stage: train an SAE on cached activations, save it in sae_lens format, measure it.

:func:`train_sae` streams the activation folders (:class:`~interp.cache.stream.ActivationStream`),
builds the sae_lens training SAE (:func:`~interp.sae.saes.build_sae`), trains it with
:func:`~interp.sae.fit.fit`, writes it with ``save_inference_model`` so that
``sae_lens.SAE.load_from_disk(out)`` loads it, and writes ``metrics.json`` (the evaluation's
numbers, see :mod:`interp.sae.metrics`, plus the training history) and ``manifest.json``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from interp.artifacts import MANIFEST, make_manifest, manifest_key, stage_folder, write_json_atomic
from interp.cache.store import ActivationStore
from interp.cache.stream import ActivationStream
from interp.errors import VSFAError
from interp.models.loading import resolve_device
from interp.sae.checkpoint import FOLDER, Checkpoint, read_checkpoint, remove_checkpoint
from interp.sae.config import SAETrainConfig
from interp.sae.fit import fit
from interp.sae.metadata import sae_metadata
from interp.sae.saes import build_sae, load_sae, save_sae

Evaluate = Callable[[Any], dict[str, Any]]
"""Measures a saved (inference) SAE; returns the numbers that go into ``metrics.json``."""

NOT_DECIDING = ("out", "quiet", "device", "checkpoint_every", "eval_rows", "eval_prompts", "log")
"""Settings that do not change the trained weights (a resume may change them)."""


def _settings(config: SAETrainConfig, stores: list[ActivationStore], hook_name: str) -> dict:
    """What decides the trained SAE: the settings and the activation folders' manifest keys."""
    settings = {k: v for k, v in asdict(config).items() if k not in (*NOT_DECIDING, "overwrite")}
    settings["hook_name"] = hook_name
    settings["acts"] = [manifest_key(s.manifest) for s in stores]
    return settings


def _check_resume(
    checkpoint: Checkpoint, settings: dict[str, Any], config: SAETrainConfig, out: Path
) -> Checkpoint | None:
    """The checkpoint to resume from; with other settings refused in one line naming them, or
    (``--overwrite``) dropped."""
    stored = checkpoint.state.get("config")
    stored = stored if isinstance(stored, dict) else {}
    changed = [k for k in settings if stored.get(k) != settings[k]]
    if not changed:
        return checkpoint
    if config.overwrite:
        remove_checkpoint(out)
        return None
    shown = "; ".join(
        "the activation folders' contents" if k == "acts"
        else f"--{k.replace('_', '-')} {stored.get(k)!r} there, {settings[k]!r} now"
        for k in changed[:3]
    )  # fmt: skip
    raise VSFAError(
        f"{out / FOLDER} holds a run with other settings ({shown}); resume with the same "
        "options, pass --overwrite to start over, or choose another --out"
    )


def _hook_name(config: SAETrainConfig, stores: list[ActivationStore]) -> str:
    if config.hook_name is not None:
        return config.hook_name
    hooks = set.intersection(*(set(s.hook_names) for s in stores))
    if len(hooks) != 1:
        raise VSFAError(f"--hook: the activation folders hold {sorted(hooks)}; name one of them")
    return hooks.pop()


def train_sae(config: SAETrainConfig, *, vlm: Any = None, evaluate: Evaluate | None = None) -> Path:
    """Train, save (sae_lens format), measure; returns the output folder.

    ``evaluate`` measures the saved SAE; by default :func:`interp.sae.metrics.evaluate_sae` on
    the folders, with the CE/KL splice metrics through ``vlm`` (a loaded model) or, when
    ``eval_prompts > 0`` and no ``vlm`` is given, the model named in each folder's manifest.
    """
    config.validate()
    out = Path(config.out)
    device = resolve_device(config.device)
    stores = [ActivationStore(d) for d in config.acts]
    hook_name = _hook_name(config, stores)
    stream = ActivationStream(
        config.acts,
        hook_name,
        batch_size=config.batch_size,
        buffer_rows=config.buffer_rows,
        device=device,
        normalize=config.normalize,
        seed=config.seed,
    )
    first = stores[0].manifest
    metadata = sae_metadata(
        stores,
        hook_name,
        model=first.get("model"),
        training_tokens=config.total_steps(stream.rows) * config.batch_size,
    )
    sae = build_sae(config, stream.d_model, device, metadata)
    settings = _settings(config, stores, hook_name)
    with stage_folder(out, (FOLDER,)):
        return _train(config, out, sae, stream, stores, hook_name, settings, vlm, evaluate, device)


def _train(
    config: SAETrainConfig,
    out: Path,
    sae: Any,
    stream: ActivationStream,
    stores: list[ActivationStore],
    hook_name: str,
    settings: dict[str, Any],
    vlm: Any,
    evaluate: Evaluate | None,
    device: torch.device,
) -> Path:
    """Resume (or start), train, save and measure, holding the folder's lock."""
    total_steps = config.total_steps(stream.rows)
    first = stores[0].manifest
    resume = read_checkpoint(out, sae.W_dec.device) if config.checkpoint_every else None
    if resume is not None:
        resume = _check_resume(resume, settings, config, out)
    start = 0 if resume is None else resume.step

    def record(step: int) -> dict[str, Any]:
        return {"config": settings, "stream": stream.position(step)}

    result = fit(
        sae, stream.iter_from(start), config, total_steps=total_steps, out=out, resume=resume,
        record=record,
    )  # fmt: skip
    if stream.scaling_factor != 1.0:
        sae.fold_activation_norm_scaling_factor(stream.scaling_factor)
    out.mkdir(parents=True, exist_ok=True)
    save_sae(sae, out)
    if evaluate is None:
        evaluate = _default_evaluation(config, stores, hook_name, vlm, device)
    metrics = evaluate(load_sae(out, device=str(device)))
    dead_fraction_train = float((result.fired_ago > config.dead_feature_window).float().mean())
    metrics.update(
        history=result.history,
        arch=config.arch,
        d_in=stream.d_model,
        d_sae=config.width,
        k=config.k if config.arch in ("topk", "batchtopk") else None,
        hook_name=hook_name,
        steps=total_steps,
        tokens=total_steps * config.batch_size,
        train_seconds=result.seconds,
        fast_step=result.fast_step,
        scaling_factor=stream.scaling_factor,
        dead_fraction_train_window=dead_fraction_train,
    )
    write_json_atomic(out / "metrics.json", metrics)
    manifest = make_manifest(
        "sae",
        {k: v for k, v in asdict(config).items() if k not in ("quiet", "out", "overwrite")},
        inputs={str(s.path): s.manifest.get("created", "") for s in stores},
        seed=config.seed,
        model=first.get("model"),
        adapters=[s.manifest.get("adapter") for s in stores],
        hook_name=hook_name,
        complete=True,
    )
    write_json_atomic(out / MANIFEST, manifest)
    remove_checkpoint(out)
    return out


def _default_evaluation(
    config: SAETrainConfig,
    stores: list[ActivationStore],
    hook_name: str,
    vlm: Any,
    device: torch.device,
) -> Evaluate:
    from interp.sae.metrics import evaluate_sae

    return functools.partial(
        evaluate_sae,
        stores=stores,
        hook_name=hook_name,
        eval_rows=config.eval_rows,
        eval_prompts=config.eval_prompts,
        vlm=vlm,
        seed=config.seed,
        device=device,
    )
