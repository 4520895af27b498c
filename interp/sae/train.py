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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from interp.artifacts import MANIFEST, make_manifest, manifest_key, stage_folder, write_json_atomic
from interp.cache.store import ActivationStore
from interp.cache.stream import ActivationStream
from interp.errors import VSFAError
from interp.models.loading import resolve_device
from interp.parallel import Ranks, broadcast_object, process_group
from interp.sae.checkpoint import (
    FOLDER,
    Checkpoint,
    read_checkpoint,
    read_checkpoint_folder,
    remove_checkpoint,
)
from interp.sae.config import SAETrainConfig
from interp.sae.distributed import DataParallel, wait_for_main, waiting_group
from interp.sae.fit import FitResult, fit
from interp.sae.metadata import sae_metadata
from interp.sae.saes import build_sae, load_sae, save_sae

Evaluate = Callable[[Any], dict[str, Any]]
"""Measures a saved (inference) SAE; returns the numbers that go into ``metrics.json``."""

NOT_DECIDING = (
    "out", "quiet", "device", "checkpoint_every", "eval_rows", "eval_prompts", "log",
    "distribute_latents",
)  # fmt: skip
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

    Under ``torchrun`` the processes train one SAE data-parallel (see
    :mod:`interp.sae.distributed`): the same result as one process at the same ``batch_size``
    (the global batch); rank 0 writes the checkpoints, the SAE and its metrics.
    """
    config = config.single()  # validated; several SAEs: interp.sae.multi.train_saes
    out = Path(config.out)
    device = resolve_device(config.device)
    with process_group(str(device), command="sae train") as ranks:
        if ranks.distributed:
            _check_parallel(config, ranks)
        elif config.distribute_latents:
            raise VSFAError(
                "--distribute-latents shares the latents among several processes; launch with "
                "torchrun --nproc_per_node N (N > 1), or leave it off"
            )
            if device.type == "cuda":
                device = torch.device("cuda", ranks.local_rank)
        stores = [ActivationStore(d) for d in config.acts]
        hook_name = _hook_name(config, stores)
        stream = ActivationStream(
            config.acts,
            hook_name,
            batch_size=config.batch_size,
            buffer_rows=config.buffer_rows,
            device="cpu" if ranks.distributed else device,  # each rank moves only its part
            normalize=config.normalize,
            seed=config.seed,
        )
        metadata = sae_metadata(
            stores,
            hook_name,
            model=stores[0].manifest.get("model"),
            training_tokens=config.total_steps(stream.rows) * config.batch_size,
        )
        sae = build_sae(config, stream.d_model, device, metadata)
        run = _Run(config, out, stream, stores, hook_name, _settings(config, stores, hook_name))
        waiting = waiting_group(ranks)
        if not ranks.is_main:
            run.train(sae, ranks, device)
            wait_for_main(ranks, waiting)  # rank 0 has written the SAE and its metrics
            return out
        with stage_folder(out, (FOLDER,)):
            run.train(sae, ranks, device)
            run.save(sae, ranks, vlm, evaluate, device)
        wait_for_main(ranks, waiting)
        return out


def _check_parallel(config: SAETrainConfig, ranks: Ranks) -> None:
    if config.distribute_latents:
        return  # every rank sees the whole batch (checked in SAETrainConfig.validate)
    if config.arch == "batchtopk":
        raise VSFAError(
            f"--arch batchtopk selects its top k x batch latents over the whole batch, which "
            f"{ranks.world_size} processes each holding a part of it do not reproduce; train it "
            "in one process, or train --arch topk with several"
        )


@dataclass
class _Run:
    """One training run's inputs; :meth:`train` on every rank, :meth:`save` on rank 0."""

    config: SAETrainConfig
    out: Path
    stream: ActivationStream
    stores: list[ActivationStore]
    hook_name: str
    settings: dict[str, Any]
    result: FitResult | None = None

    def _resume(self, ranks: Ranks, device: torch.device) -> Checkpoint | None:
        """The checkpoint to continue from: rank 0 chooses it (or refuses other settings), every
        rank restores the same folder."""
        if not self.config.checkpoint_every:
            return None
        chosen: Checkpoint | None = None
        decision: tuple[str | None, str | None] = (None, None)
        if ranks.is_main:
            try:
                chosen = read_checkpoint(self.out, device)
                if chosen is not None:
                    chosen = _check_resume(chosen, self.settings, self.config, self.out)
                decision = (str(chosen.path) if chosen is not None else None, None)
            except VSFAError as error:
                decision = (None, str(error))
        folder, error = broadcast_object(decision, ranks)
        if error is not None:
            raise VSFAError(error)
        if ranks.is_main or folder is None:
            return chosen
        return read_checkpoint_folder(Path(folder), device)

    def train(self, sae: Any, ranks: Ranks, device: torch.device) -> FitResult:
        config, stream = self.config, self.stream
        total_steps = config.total_steps(stream.rows)
        resume = self._resume(ranks, device)
        start = 0 if resume is None else resume.step

        def record(step: int) -> dict[str, Any]:
            return {"config": self.settings, "stream": stream.position(step)}

        parallel = DataParallel(ranks, device) if ranks.distributed else None
        self.result = fit(
            sae, stream.iter_from(start), config, total_steps=total_steps, out=self.out,
            resume=resume, record=record, parallel=parallel,
        )  # fmt: skip
        return self.result

    def save(
        self, sae: Any, ranks: Ranks, vlm: Any, evaluate: Evaluate | None, device: torch.device
    ) -> None:
        """Write the SAE (sae_lens format), its metrics and manifest; drop the checkpoints."""
        config, stream, stores, out = self.config, self.stream, self.stores, self.out
        result = self.result
        assert result is not None, "save() after train()"
        total_steps = config.total_steps(stream.rows)
        first = stores[0].manifest
        if stream.scaling_factor != 1.0:
            sae.fold_activation_norm_scaling_factor(stream.scaling_factor)
        out.mkdir(parents=True, exist_ok=True)
        save_sae(sae, out)
        if evaluate is None:
            evaluate = _default_evaluation(config, stores, self.hook_name, vlm, device)
        metrics = evaluate(load_sae(out, device=str(device)))
        dead_fraction_train = float((result.fired_ago > config.dead_feature_window).float().mean())
        metrics.update(
            history=result.history,
            arch=config.arch,
            d_in=stream.d_model,
            d_sae=config.width,
            k=config.k if config.arch in ("topk", "batchtopk") else None,
            hook_name=self.hook_name,
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
            hook_name=self.hook_name,
            processes=ranks.world_size,
            complete=True,
        )
        write_json_atomic(out / MANIFEST, manifest)
        remove_checkpoint(out)


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
