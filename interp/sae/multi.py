"""Several SAEs from one pass over the activations: ``vsfa sae train --hooks A,B --width 512,2048``.

Every combination of the listed hooks, widths and k values (``--hooks`` x ``--width`` x ``--k``)
is one SAE. :func:`train_saes` reads each batch of rows once, for all the hooks at once
(:class:`JointStream`), and steps every SAE on its hook's part of it, as sae_lens's
``MultiSAETrainingRunner`` steps several SAEs on one model forward. Each SAE is written in the
sae_lens format to a subfolder of ``--out`` named by :attr:`SAESpec.name`
(``blocks.2.hook_resid_post-w512-k16``; no ``-k`` for standard and jumprelu) with its own
``metrics.json``, ``manifest.json`` and checkpoints; ``--out`` gets a ``manifest.json``
(``stage: sae-multi``) listing them.

Batch ``i`` of a hook is batch ``i`` of that hook's own :class:`ActivationStream` with the same
seed (the rows are read together and shuffled by one permutation), and each SAE is built,
resumed, trained, saved and measured by the same code as a single ``vsfa sae train``
(:class:`interp.sae.train._Run`): each SAE trained jointly equals the same SAE trained alone.

The SAEs take turns: each runs :func:`~interp.sae.fit.fit` in a thread of its own, and exactly one
thread runs at a time: the driver hands SAE ``j`` its batch and waits until it asks for the next
one. So the steps run in a fixed order (the same on every rank under ``torchrun``, whose
collectives stay matched), never concurrently. A killed run resumes: each SAE continues from its
own newest checkpoint, the stream from the oldest of them, and an SAE already further along
skips the batches it has seen; SAEs already saved with the same settings are kept.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from interp.artifacts import (
    MANIFEST,
    make_manifest,
    output_is_current,
    stage_folder,
    write_json_atomic,
)
from interp.cache.store import ActivationStore
from interp.cache.stream import ActivationStream
from interp.errors import VSFAError
from interp.models.loading import resolve_device
from interp.parallel import Ranks, barrier, broadcast_object, process_group
from interp.sae.checkpoint import FOLDER
from interp.sae.config import SAETrainConfig, listed
from interp.sae.metadata import sae_metadata
from interp.sae.saes import build_sae
from interp.sae.train import Evaluate, _check_parallel, _hook_name, _Run, _settings, train_sae

STAGE = "sae-multi"


@dataclass(frozen=True)
class SAESpec:
    """One SAE of a multi-SAE run."""

    hook_name: str
    width: int
    k: int
    topk: bool  # whether k is part of the architecture (topk, batchtopk)

    @property
    def name(self) -> str:
        """Its subfolder: ``HOOK-wWIDTH-kK`` (``HOOK-wWIDTH`` when k does not apply)."""
        return f"{self.hook_name}-w{self.width}" + (f"-k{self.k}" if self.topk else "")

    def config(self, config: SAETrainConfig) -> SAETrainConfig:
        """The one-SAE config that trains this SAE alone (``vsfa sae train`` with its values)."""
        out = str(Path(config.out) / self.name)
        k = self.k if self.topk else config.k
        return replace(config, hook_name=self.hook_name, width=self.width, k=k, out=out, quiet=True)


def sae_specs(config: SAETrainConfig, stores: Sequence[ActivationStore]) -> list[SAESpec]:
    """The SAEs of ``config``: every hook x width x k, in that order."""
    hooks = listed(config.hook_name) or [_hook_name(replace(config, hook_name=None), list(stores))]
    topk = config.arch in ("topk", "batchtopk")
    ks = listed(config.k) if topk else [0]
    return [
        SAESpec(hook, width, k, topk)
        for hook, width, k in itertools.product(hooks, listed(config.width), ks)
    ]


class JointStream:
    """Batches of several hooks' activations of the same rows, as ``{hook: [batch, d]}``.

    Each hook's batches are those of its own :class:`ActivationStream` (:attr:`alone`: same
    folders, seed, batch and buffer sizes, its own scaling factor), drawn in step: the streams
    shuffle by the same seeded permutations of the same row counts, so batch ``i`` of every hook
    holds the same rows. Every hook's rows are read once per pass, however many SAEs read them.
    """

    def __init__(self, dirs: Sequence[str], hooks: Sequence[str], **options: Any):
        self.hooks = list(dict.fromkeys(hooks))
        self.alone = {hook: ActivationStream(dirs, hook, **options) for hook in self.hooks}
        self.rows = self.alone[self.hooks[0]].rows

    def iter_from(self, step: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """The batches after the first ``step`` (:meth:`ActivationStream.iter_from`)."""
        streams = [self.alone[hook].iter_from(step) for hook in self.hooks]
        for batches in zip(*streams):
            yield dict(zip(self.hooks, batches))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self.iter_from(0)


class _Stopped(BaseException):
    """Ends an SAE's thread when the run stops (another SAE failed, or an interrupt)."""


class _Turns:
    """One SAE's thread and the baton it takes turns with: :meth:`turn` lets it run until it
    asks for its next batch (or finishes), while the caller waits."""

    def __init__(self, spec: SAESpec, work: Callable[[_Turns], Path]):
        self.spec = spec
        self.go, self.back = threading.Semaphore(0), threading.Semaphore(0)
        self.batch: torch.Tensor | None = None
        self.start: int | None = None  # the step its data starts at (set by iter_from)
        self.stop = self.finished = False
        self.error: BaseException | None = None
        self.result: Path | None = None
        self._work = work
        self.thread = threading.Thread(target=self._run, name=f"sae {spec.name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.go.acquire()
        try:
            if not self.stop:
                self.result = self._work(self)
        except BaseException as error:  # noqa: BLE001 - handed to the driver, raised there
            self.error = error
        finally:
            self.finished = True
            self.back.release()

    def batches(self) -> Iterator[torch.Tensor]:
        while True:
            self.back.release()  # wants a batch: the baton goes back to the driver
            self.go.acquire()
            if self.stop:
                raise _Stopped
            batch, self.batch = self.batch, None
            assert batch is not None
            yield batch

    def turn(self, batch: torch.Tensor | None = None) -> None:
        self.batch = batch
        self.go.release()
        self.back.acquire()
        if self.error is not None and not isinstance(self.error, _Stopped):
            raise self.error

    def end(self) -> None:
        if not self.finished:
            self.stop = True
            self.go.release()
        self.thread.join()


class _Feed:
    """What :class:`interp.sae.train._Run` reads of its stream: the hook's own stream's rows,
    width, scaling and positions, with the batches handed over in turns."""

    def __init__(self, alone: ActivationStream, turns: _Turns):
        self._alone, self._turns = alone, turns

    def __getattr__(self, name: str) -> Any:
        return getattr(self._alone, name)

    def iter_from(self, step: int = 0) -> Iterator[torch.Tensor]:
        self._turns.start = step
        return self._turns.batches()


def train_saes(
    config: SAETrainConfig, *, vlm: Any = None, evaluate: Evaluate | None = None
) -> dict[str, Path]:
    """Train every SAE of ``config`` (:func:`sae_specs`) from one pass over the activations;
    returns ``{name: folder}``. One SAE is :func:`~interp.sae.train.train_sae` as it is.

    ``vlm`` and ``evaluate`` are those of :func:`~interp.sae.train.train_sae`, for each SAE.
    Under ``torchrun`` every SAE trains data-parallel as one SAE does.
    """
    config.validate()
    if not config.several:
        path = train_sae(config.single(), vlm=vlm, evaluate=evaluate)
        return {path.name: path}
    if config.log == "wandb":
        raise VSFAError("--log wandb logs one SAE per process; use --log tensorboard for several")
    out = Path(config.out)
    device = resolve_device(config.device)
    with process_group(str(device), command="sae train") as ranks:
        if ranks.distributed:
            _check_parallel(config, ranks)
            if device.type == "cuda":
                device = torch.device("cuda", ranks.local_rank)
        stores = [ActivationStore(d) for d in config.acts]
        specs = sae_specs(config, stores)
        stream = JointStream(
            config.acts, [spec.hook_name for spec in specs], batch_size=config.batch_size,
            buffer_rows=config.buffer_rows, device="cpu" if ranks.distributed else device,
            normalize=config.normalize, seed=config.seed,
        )  # fmt: skip
        if not ranks.is_main:
            _train_all(config, specs, stream, stores, ranks, device, vlm, evaluate)
            barrier(ranks)
            return {spec.name: out / spec.name for spec in specs}
        with stage_folder(out):
            _write_index(config, specs, stores, complete=False)
            _train_all(config, specs, stream, stores, ranks, device, vlm, evaluate)
            _write_index(config, specs, stores, complete=True)
        barrier(ranks)
        return {spec.name: out / spec.name for spec in specs}


def _manifest_config(config: SAETrainConfig) -> dict[str, Any]:
    return {k: v for k, v in asdict(config).items() if k not in ("quiet", "out", "overwrite")}


def _inputs(stores: Sequence[ActivationStore]) -> dict[str, str]:
    return {str(s.path): s.manifest.get("created", "") for s in stores}


def _is_saved(config: SAETrainConfig, stores: Sequence[ActivationStore]) -> bool:
    """Whether ``config.out`` already holds this SAE, finished with the same settings."""
    manifest = make_manifest("sae", _manifest_config(config), inputs=_inputs(stores),
                             seed=config.seed)  # fmt: skip
    return output_is_current(config.out, manifest)


def _write_index(
    config: SAETrainConfig, specs: Sequence[SAESpec], stores: Sequence[ActivationStore], *,
    complete: bool,
) -> None:  # fmt: skip
    listing = [{"name": s.name, "hook_name": s.hook_name, "width": s.width,
                "k": s.k if s.topk else None} for s in specs]  # fmt: skip
    manifest = make_manifest(
        STAGE, _manifest_config(config), inputs=_inputs(stores), seed=config.seed,
        model=stores[0].manifest.get("model"), saes=listing, complete=complete,
    )  # fmt: skip
    write_json_atomic(Path(config.out) / MANIFEST, manifest)


def _train_all(
    config: SAETrainConfig,
    specs: Sequence[SAESpec],
    stream: JointStream,
    stores: list[ActivationStore],
    ranks: Ranks,
    device: torch.device,
    vlm: Any,
    evaluate: Evaluate | None,
) -> None:
    """Build, resume and train every unsaved SAE in turns on one pass over ``stream``."""
    configs = [spec.config(config) for spec in specs]
    saved = broadcast_object([_is_saved(c, stores) for c in configs], ranks)
    metadata: dict[str, dict[str, Any]] = {}

    def work(spec: SAESpec, sub: SAETrainConfig, turns: _Turns) -> Path:
        alone = stream.alone[spec.hook_name]
        if spec.hook_name not in metadata:
            metadata[spec.hook_name] = sae_metadata(
                stores, spec.hook_name, model=stores[0].manifest.get("model"),
                training_tokens=sub.total_steps(alone.rows) * sub.batch_size,
            )  # fmt: skip
        sae = build_sae(sub, alone.d_model, device, metadata[spec.hook_name])
        run = _Run(sub, Path(sub.out), _Feed(alone, turns), stores, spec.hook_name,  # type: ignore[arg-type]
                   _settings(sub, stores, spec.hook_name))  # fmt: skip
        if not ranks.is_main:
            run.train(sae, ranks, device)
            return run.out
        with stage_folder(run.out, (FOLDER,)):
            run.train(sae, ranks, device)
            run.save(sae, ranks, vlm, evaluate, device)
        return run.out

    jobs: list[_Turns] = []
    try:
        for spec, sub, done in zip(specs, configs, saved):
            if not done:
                jobs.append(_Turns(spec, lambda t, spec=spec, sub=sub: work(spec, sub, t)))
                jobs[-1].turn()  # its setup: build, resume, up to its first batch
        _drive(jobs, stream, config.total_steps(stream.rows), config.quiet or not ranks.is_main)
    finally:
        for job in jobs:
            job.end()


def _drive(jobs: list[_Turns], stream: JointStream, total_steps: int, quiet: bool) -> None:
    """Hand each batch of ``stream`` to every job that has not seen it yet, in turns."""
    active = [job for job in jobs if not job.finished]
    if not active:
        return
    first = min(job.start or 0 for job in active)
    progress = tqdm(total=total_steps, initial=first, desc=f"{len(jobs)} SAEs", disable=quiet)
    batches = stream.iter_from(first)
    for step in range(first, total_steps):
        batch = next(batches)
        for job in active:
            if (job.start or 0) <= step:
                job.turn(batch[job.spec.hook_name])
        active = [job for job in active if not job.finished]
        progress.update(1)
        if not active:
            break
    progress.close()
    if active:
        raise RuntimeError(f"SAEs {[j.spec.name for j in active]} did not finish")
