"""The SAE training loop: ``fit(sae, batches, config)``.

The step is chosen once, before the loop: the sparse :func:`interp.sae.fast.fast_training_step`
for TopK and BatchTopK (same loss and gradients, several times faster), or sae_lens's own
``training_forward_pass`` (standard, jumprelu, or ``fast_step`` off). Around it the loop does
what sae_lens's ``SAETrainer`` does: Adam, gradient clipping at norm 1, LR warm-up/decay through
sae_lens's scheduler, coefficient warm-up, and dead-latent tracking for the TopK auxiliary loss.
It evaluates nothing and loads no model; see :func:`interp.sae.train.train_sae` for the stage.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE
from sae_lens.saes.sae import TrainCoefficientConfig, TrainingSAE, TrainStepInput
from sae_lens.training.optim import CoefficientScheduler, get_lr_scheduler
from tqdm.auto import tqdm

from interp.errors import VSFAError
from interp.sae.checkpoint import Checkpoint, save_checkpoint
from interp.sae.config import SAETrainConfig
from interp.sae.distributed import DataParallel
from interp.sae.fast import fast_training_step, make_adam, supports_fast_step
from interp.sae.sharded import ShardedTopK


@dataclass
class Step:
    """What one training step computed (``loss`` still has its graph)."""

    loss: torch.Tensor
    losses: dict[str, torch.Tensor]
    sae_out: torch.Tensor
    fired: torch.Tensor  # [d_sae] bool: latents active on some row of the batch
    l0: float  # mean active latents per row


StepFn = Callable[[TrainingSAE, torch.Tensor, torch.Tensor, dict[str, Any], int], Step]
"""``(sae, batch, dead-latent mask, coefficient schedulers, step number) -> Step``."""


def fast_step(sae: TrainingSAE, x: torch.Tensor, dead: torch.Tensor, *_: Any) -> Step:
    """:func:`~interp.sae.fast.fast_training_step` (TopK and BatchTopK: no coefficients, and
    nothing depends on the step number)."""
    out = fast_training_step(sae, x, dead)
    fired = torch.zeros_like(dead, dtype=torch.bool)
    fired[out.cols[out.acts > 0]] = True
    l0 = float((out.acts > 0).sum()) / x.shape[0]
    if isinstance(sae, BatchTopKTrainingSAE):
        positive = out.acts[out.acts > 0]
        if positive.numel():
            sae.update_topk_threshold(positive)
    return Step(out.loss, out.losses, out.sae_out, fired, l0)


def sae_lens_step(
    sae: TrainingSAE,
    x: torch.Tensor,
    dead: torch.Tensor,
    coefficients: dict[str, CoefficientScheduler],
    step: int,
) -> Step:
    """sae_lens's own ``training_forward_pass`` (every architecture)."""
    output = sae.training_forward_pass(
        TrainStepInput(
            sae_in=x,
            coefficients={n: c.value for n, c in coefficients.items()},
            dead_neuron_mask=dead,
            n_training_steps=step,
            is_logging_step=False,
        )
    )
    active = output.feature_acts.detach() != 0
    return Step(
        output.loss,
        output.losses,
        output.sae_out,
        active.any(0),
        float(active.sum(-1).float().mean()),
    )


class _Logger:
    """Training curves to tensorboard or wandb (``none``: nowhere)."""

    def __init__(self, kind: str, out: Path, config: dict[str, Any]):
        self.kind, self.writer = kind, None
        if kind == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise VSFAError("--log tensorboard needs the tensorboard package") from None
            self.writer = SummaryWriter(str(out / "tensorboard"))
        elif kind == "wandb":
            try:
                import wandb
            except ImportError:
                raise VSFAError("--log wandb needs the wandb package") from None
            self.writer = wandb.init(project="vsfa-sae", config=config, dir=str(out))

    def log(self, step: int, values: dict[str, float]) -> None:
        if self.kind == "tensorboard":
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
        elif self.kind == "wandb":
            self.writer.log(values, step=step)

    def close(self) -> None:
        if self.writer is not None:
            (self.writer.close if self.kind == "tensorboard" else self.writer.finish)()


@dataclass
class FitResult:
    """A finished training run: its loss history, dead-latent counters and timing."""

    history: list[dict[str, float]]
    fired_ago: torch.Tensor  # steps since each latent last fired
    seconds: float
    fast_step: bool


def _schedulers(
    sae: TrainingSAE, optimizer: torch.optim.Optimizer, config: SAETrainConfig, total_steps: int
) -> tuple[Any, dict[str, CoefficientScheduler]]:
    scheduler = get_lr_scheduler(
        "constant",
        optimizer=optimizer,
        training_steps=total_steps,
        lr=config.lr,
        warm_up_steps=config.lr_warm_up_steps,
        decay_steps=config.lr_decay_steps,
        lr_end=0.0,
        num_cycles=1,
    )
    coefficients = {
        name: CoefficientScheduler(
            warm_up_steps=c.warm_up_steps if isinstance(c, TrainCoefficientConfig) else 0,
            final_value=c.value if isinstance(c, TrainCoefficientConfig) else c,
        )
        for name, c in sae.get_coefficients().items()
    }
    return scheduler, coefficients


def fit(
    sae: TrainingSAE,
    batches: Iterator[torch.Tensor],
    config: SAETrainConfig,
    *,
    total_steps: int,
    out: Path,
    resume: Checkpoint | None = None,
    record: Callable[[int], dict[str, Any]] | None = None,
    parallel: DataParallel | None = None,
) -> FitResult:
    """Train ``sae`` for ``total_steps`` steps on ``batches`` (``[batch, d_in]`` tensors).

    ``out`` receives the checkpoints (every ``config.checkpoint_every`` steps) and the
    tensorboard/wandb logs; ``resume`` continues a run from its checkpoint (``batches`` are then
    the remaining steps' batches). ``record(step)`` gives more facts to store in a checkpoint
    written after ``step`` steps (the settings, the data stream's position). The SAE is left in
    eval mode.

    ``parallel`` (several processes): ``batches`` are the global batches, each rank trains on
    its share and the gradients, dead-latent counters and logged numbers are reduced over ranks
    (:mod:`interp.sae.distributed`); only rank 0 writes checkpoints and logs. With
    ``config.distribute_latents`` every rank trains its slice of the latents on the whole batch
    (:mod:`interp.sae.sharded`) and the slices are gathered back into ``sae`` at the end.
    """
    step_fn: StepFn = fast_step if config.fast_step and supports_fast_step(sae) else sae_lens_step
    sharded = None
    if parallel is not None and config.distribute_latents:
        parallel.broadcast_parameters(sae)
        sharded = ShardedTopK(sae, parallel.ranks)
        step_fn = sharded.step
    optimizer = make_adam((sharded or sae).parameters(), config.lr)
    scheduler, coefficients = _schedulers(sae, optimizer, config, total_steps)
    fired_ago = torch.zeros(sae.cfg.d_sae, device=sae.W_dec.device)
    history: list[dict[str, float]] = []
    start_step = 0
    if resume is not None:
        if sharded is not None:  # a whole checkpoint: every rank keeps its slice
            whole = torch.optim.Adam(sae.parameters())
            fired_ago = resume.restore(sae, whole)
            sharded.load_whole(sae, whole, optimizer)
        else:
            fired_ago = resume.restore(sae, optimizer)
        start_step, history = resume.step, list(resume.history)
        with warnings.catch_warnings():  # replaying the schedule before any optimizer step
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(start_step):
                scheduler.step()
                for coefficient in coefficients.values():
                    coefficient.step()
    main = parallel is None or parallel.ranks.is_main
    if parallel is not None:
        parallel.broadcast_parameters(sae)
    logger = _Logger(config.log if main else "none", out, asdict(config))
    log_every = max(1, total_steps // 100)
    progress = tqdm(
        total=total_steps,
        initial=start_step,
        desc=f"sae {config.arch}",
        disable=config.quiet or not main,
    )
    started = time.time()
    sae.train()
    for step in range(start_step, total_steps):
        x, weight = next(batches), 1.0
        if sharded is not None:
            x = x.to(parallel.device)
        elif parallel is not None:
            x, weight = parallel.local(x)
        dead = fired_ago > config.dead_feature_window
        result = step_fn(sae, x, dead, coefficients, step) if x.shape[0] else None
        fired = result.fired if result is not None else torch.zeros_like(dead)
        if result is not None:
            (result.loss * weight if parallel is not None else result.loss).backward()
        if parallel is not None and sharded is None:
            parallel.all_reduce_gradients(sae)
            fired = parallel.fired_anywhere(fired)
        fired_ago += 1
        fired_ago[fired] = 0
        if sharded is not None:
            sharded.clip_grad_norm(1.0)
        else:
            torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        for coefficient in coefficients.values():
            coefficient.step()
        if step % log_every == 0 or step == total_steps - 1:
            if parallel is None or sharded is not None:
                entry = _log_entry(step, result, x)
            else:
                entry = parallel.log_entry(step, result, x, weight)
            history.append(entry)
            logger.log(step, entry)
            progress.set_postfix(
                loss=f"{entry['loss']:.4g}", fvu=f"{entry['fvu']:.3f}", l0=f"{entry['l0']:.1f}"
            )
        progress.update(1)
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
            saved = optimizer
            if sharded is not None:  # gathered: a one-process checkpoint
                saved = sharded.whole_optimizer(sae, optimizer)
            if parallel is not None:
                parallel.check_replicas(sae)
            if main:
                state = {"step": step + 1, "history": history, "fired_ago": fired_ago.clone()}
                save_checkpoint(out, sae, saved, {**(record(step + 1) if record else {}), **state})
    if sharded is not None:
        sharded.gather_into(sae)
    if parallel is not None:
        parallel.check_replicas(sae)
    progress.close()
    logger.close()
    seconds = time.time() - started
    sae.eval()
    return FitResult(history, fired_ago, seconds, fast_step=step_fn is fast_step)


@torch.no_grad()
def _log_entry(step: int, result: Step, x: torch.Tensor) -> dict[str, float]:
    residual = (result.sae_out - x).pow(2).sum()
    fvu = float(residual / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12))
    entry = {"step": step, "loss": float(result.loss.detach()), "fvu": fvu, "l0": result.l0}
    entry.update({k: float(v.detach()) for k, v in result.losses.items()})
    return entry
