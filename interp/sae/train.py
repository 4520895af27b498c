"""Train an SAE on cached activations and save it in sae_lens format.

The SAE is a sae_lens ``TrainingSAE`` of the requested architecture. Each step is sae_lens's own
``training_forward_pass`` (standard, jumprelu), or, for TopK and BatchTopK, the sparse
:func:`interp.sae.fast.fast_training_step`, which gives the same loss and gradients several
times faster. Around the step the loop does what sae_lens's ``SAETrainer`` does: Adam, gradient
clipping at norm 1, LR warm-up/decay through sae_lens's scheduler, coefficient warm-up, and
dead-latent tracking for the TopK auxiliary loss. The result is written with
``save_inference_model`` so that ``sae_lens.SAE.load_from_disk(out)`` loads it, plus
``metrics.json`` (see :mod:`interp.sae.metrics`) and ``manifest.json``.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from sae_lens import SAE
from sae_lens.registry import get_sae_training_class
from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE
from sae_lens.saes.sae import SAEMetadata, TrainCoefficientConfig, TrainingSAE, TrainStepInput
from sae_lens.training.optim import CoefficientScheduler, get_lr_scheduler
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from interp.artifacts import MANIFEST, atomic_path, make_manifest, read_json, write_json_atomic
from interp.errors import VSFAError
from interp.hooks.cache import ActivationStore
from interp.hooks.stream import ActivationStream
from interp.models.loading import resolve_device
from interp.sae.fast import fast_training_step, supports_fast_step

ARCHS = ("topk", "batchtopk", "jumprelu", "standard")
LOGGERS = ("none", "tensorboard", "wandb")


@dataclass
class SAETrainConfig:
    """How to train one SAE.

    Attributes:
        acts: activation folders (base and tuned together by default for model diffing).
        out: output folder (``sae_checkpoints/NAME``).
        hook_name: which cached hook; defaults to the folders' only hook.
        arch: ``topk``, ``batchtopk``, ``jumprelu`` or ``standard``.
        width: number of latents (``d_sae``).
        k: active latents per token (TopK) or on average (BatchTopK).
        lr: Adam learning rate.
        steps: training steps; ``tokens`` (rows) is converted to steps when given instead.
        batch_size: rows per step.
        buffer_rows: shuffle buffer of the activation stream.
        device: ``cpu``, ``cuda`` or ``auto``.
        seed: initialisation and shuffling seed.
        normalize: ``none`` or ``expected_average_only_in`` (folded back into the saved SAE).
        l1_coefficient / l0_coefficient: sparsity penalties of ``standard`` / ``jumprelu``.
        coefficient_warm_up_steps: linear warm-up of those penalties.
        lr_warm_up_steps / lr_decay_steps: sae_lens LR schedule.
        dead_feature_window: steps without firing after which a latent counts as dead.
        checkpoint_every: save a resumable checkpoint every N steps (0: never).
        fast_step: use the sparse TopK/BatchTopK step (off: sae_lens's own step).
        eval_rows: activation rows used for the reconstruction metrics.
        eval_prompts: prompts spliced through the model for CE/KL (0: skip).
        log: ``none``, ``tensorboard`` or ``wandb``.
        quiet: no progress bar.
    """

    acts: list[str]
    out: str
    hook_name: str | None = None
    arch: str = "topk"
    width: int = 4096
    k: int = 32
    lr: float = 2e-4
    steps: int | None = None
    tokens: int | None = None
    batch_size: int = 4096
    buffer_rows: int = 262144
    device: str = "auto"
    seed: int = 0
    normalize: str = "none"
    l1_coefficient: float = 1.0
    l0_coefficient: float = 1.0
    coefficient_warm_up_steps: int = 0
    lr_warm_up_steps: int = 0
    lr_decay_steps: int = 0
    dead_feature_window: int = 1000
    checkpoint_every: int = 0
    fast_step: bool = True
    eval_rows: int = 16384
    eval_prompts: int = 16
    log: str = "none"
    quiet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise VSFAError(f"--arch {self.arch!r}: expected one of {', '.join(ARCHS)}")
        if self.width < 1 or self.k < 1 or self.batch_size < 1:
            raise VSFAError("--width, --k and --batch-size must be at least 1")
        if self.arch in ("topk", "batchtopk") and self.k > self.width:
            raise VSFAError(f"--k {self.k} is larger than --width {self.width}")
        if self.log not in LOGGERS:
            raise VSFAError(f"--log {self.log!r}: expected one of {', '.join(LOGGERS)}")

    def total_steps(self, rows: int) -> int:
        if self.steps is not None:
            return self.steps
        if self.tokens is not None:
            return max(1, math.ceil(self.tokens / self.batch_size))
        return max(1, math.ceil(rows / self.batch_size))  # default: one epoch


def build_sae(
    config: SAETrainConfig, d_in: int, device: torch.device, metadata: dict[str, Any]
) -> TrainingSAE:
    """A fresh sae_lens training SAE of ``config.arch`` (seeded)."""
    sae_class, cfg_class = get_sae_training_class(config.arch)
    kwargs: dict[str, Any] = dict(d_in=d_in, d_sae=config.width, device=str(device))
    if config.arch in ("topk", "batchtopk"):
        kwargs["k"] = config.k
    elif config.arch == "standard":
        kwargs.update(
            l1_coefficient=config.l1_coefficient,
            l1_warm_up_steps=config.coefficient_warm_up_steps,
        )
    elif config.arch == "jumprelu":
        kwargs.update(
            l0_coefficient=config.l0_coefficient,
            l0_warm_up_steps=config.coefficient_warm_up_steps,
        )
    kwargs.update(config.extra)
    kwargs["metadata"] = SAEMetadata(**metadata)
    torch.manual_seed(config.seed)
    return sae_class(cfg_class(**kwargs))


def load_sae(path: str | os.PathLike, device: str = "cpu") -> SAE:
    """Load a saved SAE (sae_lens format) with a clear error for a wrong folder."""
    path = Path(path)
    if not (path / "cfg.json").exists() or not (path / "sae_weights.safetensors").exists():
        raise VSFAError(
            f"{path} is not a saved SAE: expected cfg.json and sae_weights.safetensors "
            "(written by `vsfa sae train`)"
        )
    try:
        return SAE.load_from_disk(str(path), device=str(resolve_device(device)))
    except VSFAError:
        raise
    except Exception as error:  # sae_lens raises assorted errors for malformed folders
        raise VSFAError(f"{path} cannot be loaded as an SAE: {error}") from None


def check_sae_matches(sae: SAE, store: ActivationStore, hook_name: str | None = None) -> None:
    """Raise when an SAE cannot read a folder's activations (width or hook mismatch)."""
    if sae.cfg.d_in != store.d_model:
        raise VSFAError(
            f"SAE d_in is {sae.cfg.d_in} but the activations in {store.path} have d_model "
            f"{store.d_model}; the SAE was trained on another model or layer"
        )
    hook = hook_name or sae.cfg.metadata.hook_name
    if hook:
        store.check_hook(hook)


# ---- checkpoints -------------------------------------------------------------------------------
def _save_checkpoint(
    out: Path, sae: TrainingSAE, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    tensors = {f"sae.{name}": value.detach().cpu() for name, value in sae.state_dict().items()}
    names = {id(p): n for n, p in sae.named_parameters()}
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor):
                    tensors[f"adam.{names[id(param)]}.{key}"] = value.detach().cpu().reshape(-1)
    tensors["fired_ago"] = state.pop("fired_ago").cpu()
    folder = out / "checkpoint"
    with atomic_path(folder / "state.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    write_json_atomic(folder / "state.json", state)


def _load_checkpoint(
    out: Path, sae: TrainingSAE, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], torch.Tensor] | None:
    folder = out / "checkpoint"
    if not (folder / "state.json").exists():
        return None
    state = read_json(folder / "state.json")
    tensors = load_file(str(folder / "state.safetensors"), device=str(sae.W_dec.device))
    sae.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("sae.")})
    params = dict(sae.named_parameters())
    for name, param in params.items():
        adam = {k.split(".")[-1]: v for k, v in tensors.items() if k.startswith(f"adam.{name}.")}
        if adam:
            optimizer.state[param] = {
                key: value.reshape(param.shape) if value.numel() == param.numel() else value
                for key, value in adam.items()
            }
            if "step" in optimizer.state[param]:
                optimizer.state[param]["step"] = optimizer.state[param]["step"].reshape(())
    return state, tensors["fired_ago"]


# ---- logging ------------------------------------------------------------------------------------
class _Logger:
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


# ---- training -----------------------------------------------------------------------------------
def train_sae(config: SAETrainConfig, *, vlm: Any = None) -> Path:
    """Train, save (sae_lens format), measure; returns the output folder.

    ``vlm`` (optional) is the loaded model used for the CE/KL splice metrics; without it the model
    named in the activation manifest is loaded when ``eval_prompts > 0``.
    """
    from interp.sae.metrics import evaluate_sae

    config.validate()
    out = Path(config.out)
    device = resolve_device(config.device)
    stores = [ActivationStore(d) for d in config.acts]
    hooks = set.intersection(*(set(s.hook_names) for s in stores))
    hook_name = config.hook_name
    if hook_name is None:
        if len(hooks) != 1:
            raise VSFAError(
                f"--hook: the activation folders hold {sorted(hooks)}; name one of them"
            )
        hook_name = hooks.pop()
    stream = ActivationStream(
        config.acts,
        hook_name,
        batch_size=config.batch_size,
        buffer_rows=config.buffer_rows,
        device=device,
        normalize=config.normalize,
        seed=config.seed,
    )
    total_steps = config.total_steps(stream.rows)
    first = stores[0].manifest
    metadata = {
        "hook_name": hook_name,
        "model_name": first.get("model"),
        "model_from_pretrained_kwargs": {},
        "dataset_path": ",".join(str(s.path) for s in stores),
        "context_size": None,
    }
    sae = build_sae(config, stream.d_model, device, metadata)
    use_fast = config.fast_step and supports_fast_step(sae)
    optimizer = torch.optim.Adam(sae.parameters(), lr=config.lr)
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
    fired_ago = torch.zeros(config.width, device=device)
    history: list[dict[str, float]] = []
    start_step = 0
    resumed = _load_checkpoint(out, sae, optimizer) if config.checkpoint_every else None
    if resumed is not None:
        state, fired_ago = resumed
        start_step, history = int(state["step"]), list(state["history"])
        with warnings.catch_warnings():  # replaying the schedule before any optimizer step
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(start_step):
                scheduler.step()
                for coefficient in coefficients.values():
                    coefficient.step()
        stream.seed = config.seed + start_step  # a fresh shuffle for the remaining steps
    logger = _Logger(config.log, out, asdict(config))
    log_every = max(1, total_steps // 100)
    batches = iter(stream)
    progress = tqdm(
        total=total_steps, initial=start_step, desc=f"sae {config.arch}", disable=config.quiet
    )
    started = time.time()
    sae.train()
    for step in range(start_step, total_steps):
        x = next(batches)
        dead = fired_ago > config.dead_feature_window
        if use_fast:
            out_step = fast_training_step(sae, x, dead)
            loss, losses = out_step.loss, out_step.losses
            fired = torch.zeros_like(fired_ago, dtype=torch.bool)
            fired[out_step.cols[out_step.acts > 0]] = True
            l0 = float((out_step.acts > 0).sum()) / x.shape[0]
            sae_out = out_step.sae_out
            if isinstance(sae, BatchTopKTrainingSAE):
                positive = out_step.acts[out_step.acts > 0]
                if positive.numel():
                    sae.update_topk_threshold(positive)
        else:
            output = sae.training_forward_pass(
                TrainStepInput(
                    sae_in=x,
                    coefficients={n: c.value for n, c in coefficients.items()},
                    dead_neuron_mask=dead,
                    n_training_steps=step,
                    is_logging_step=False,
                )
            )
            loss, losses, sae_out = output.loss, output.losses, output.sae_out
            active = output.feature_acts.detach() != 0
            fired, l0 = active.any(0), float(active.sum(-1).float().mean())
        fired_ago += 1
        fired_ago[fired] = 0
        loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        for coefficient in coefficients.values():
            coefficient.step()
        if step % log_every == 0 or step == total_steps - 1:
            with torch.no_grad():
                residual = (sae_out - x).pow(2).sum()
                fvu = float(residual / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12))
            entry = {"step": step, "loss": float(loss.detach()), "fvu": fvu, "l0": l0}
            entry.update({k: float(v.detach()) for k, v in losses.items()})
            history.append(entry)
            logger.log(step, entry)
            progress.set_postfix(loss=f"{entry['loss']:.4g}", fvu=f"{fvu:.3f}", l0=f"{l0:.1f}")
        progress.update(1)
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
            _save_checkpoint(
                out,
                sae,
                optimizer,
                {"step": step + 1, "history": history, "fired_ago": fired_ago.clone()},
            )
    progress.close()
    logger.close()
    train_seconds = time.time() - started
    sae.eval()
    if stream.scaling_factor != 1.0:
        sae.fold_activation_norm_scaling_factor(stream.scaling_factor)
    out.mkdir(parents=True, exist_ok=True)
    _save_sae_atomically(sae, out)
    inference_sae = load_sae(out, device=str(device))
    metrics = evaluate_sae(
        inference_sae,
        stores,
        hook_name,
        eval_rows=config.eval_rows,
        eval_prompts=config.eval_prompts,
        vlm=vlm,
        seed=config.seed,
        device=device,
    )
    dead_fraction_train = float((fired_ago > config.dead_feature_window).float().mean())
    metrics.update(
        history=history,
        arch=config.arch,
        d_in=stream.d_model,
        d_sae=config.width,
        k=config.k if config.arch in ("topk", "batchtopk") else None,
        hook_name=hook_name,
        steps=total_steps,
        tokens=total_steps * config.batch_size,
        train_seconds=train_seconds,
        fast_step=use_fast,
        scaling_factor=stream.scaling_factor,
        dead_fraction_train_window=dead_fraction_train,
    )
    write_json_atomic(out / "metrics.json", metrics)
    manifest = make_manifest(
        "sae",
        {k: v for k, v in asdict(config).items() if k not in ("quiet", "out")},
        inputs={str(s.path): s.manifest.get("created", "") for s in stores},
        seed=config.seed,
        model=first.get("model"),
        adapters=[s.manifest.get("adapter") for s in stores],
        hook_name=hook_name,
        complete=True,
    )
    write_json_atomic(out / MANIFEST, manifest)
    if (out / "checkpoint").exists():
        shutil.rmtree(out / "checkpoint")
    return out


def _save_sae_atomically(sae: TrainingSAE, out: Path) -> None:
    """``save_inference_model`` into a temporary folder, then move its two files into place."""
    tmp = out / ".saving"
    if tmp.exists():
        shutil.rmtree(tmp)
    weights, cfg = sae.save_inference_model(tmp)
    os.replace(weights, out / weights.name)
    os.replace(cfg, out / cfg.name)
    shutil.rmtree(tmp)
