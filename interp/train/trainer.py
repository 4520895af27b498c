"""Fine-tune a VLM on conversations: VSFA (LoRA or full) and the VLGuard baseline.

One plain training loop over pre-tokenised examples (the models are ``transformers`` models and
the adapters ``peft`` ones), read top to bottom in :func:`_train`: load the model, tokenise the
data, wrap the model for the method (:mod:`interp.train.model`), build the optimizer and the
schedule, resume from the latest checkpoint, then step. The loss is the token-weighted
cross-entropy on response tokens over each optimizer step (gradient accumulation divides by the
step's answer-token count, so accumulating is the same as a larger batch). Checkpoints every
``save_every`` steps let a killed run continue to the same final weights as an uninterrupted one.
Several processes (``accelerate launch`` / ``torchrun``) share each step's micro-batches.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from interp.artifacts import (
    MANIFEST,
    manifest_key,
    output_is_current,
    remove_orphans,
    write_json_atomic,
)
from interp.errors import VSFAError, warn
from interp.locks import folder_lock
from interp.parallel import check_launch
from interp.threads import cpu_threads
from interp.train.checkpoint import (
    CHECKPOINTS,
    checkpoint_key,
    checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from interp.train.config import StepCallback, TrainConfig, step_monitors
from interp.train.data import MicroBatches, answer_tokens, collate, load_examples, tokenize_examples
from interp.train.model import answer_loss_sum, prepare_model, save_result
from interp.train.outputs import finish_run, prepare_run_dir, train_manifest, world_size


def train(
    config: TrainConfig, *, stop_after: int | None = None, on_step: Sequence[StepCallback] = ()
) -> Path:
    """Run (or resume, or skip when already done) one fine-tuning run; returns the run folder.

    ``stop_after``: stop after this many optimizer steps of this call, leaving a checkpoint
    (a run split across time-limited jobs; running again continues it). ``on_step``:
    ``callback(step, vlm, total_steps)`` run on the main process before the first step of this
    call and after every optimizer step (``config.monitor`` adds the registered training monitor).
    """
    check_launch()
    out = Path(config.out)
    manifest = train_manifest(config)
    state = None
    if world_size() > 1:
        from accelerate import PartialState

        # Joins the process group of `accelerate launch` / `torchrun` (gloo on CPUs).
        state = PartialState(cpu=_on_cpu(config))
        if state.num_processes != world_size():
            raise VSFAError(
                f"WORLD_SIZE={world_size()} but accelerate set up {state.num_processes} "
                "process(es); launch with `accelerate launch` or `torchrun`"
            )
    if out.exists() and not out.is_dir():
        raise VSFAError(f"--out {out} is a file; give a run folder")
    if output_is_current(out, manifest):
        return out
    key = manifest_key(manifest)
    main = state is None or state.is_main_process
    # one writer per run folder (the main process holds the lock for all of a launch)
    with folder_lock(out) if main else nullcontext():
        if main:
            remove_orphans(out, (CHECKPOINTS,))
            prepare_run_dir(out, key, config.overwrite)
        if state is not None:
            state.wait_for_everyone()
        if config.method == "none":
            if main:
                manifest.update(complete=True, method="none", base_model=config.model, history=[])
                write_json_atomic(out / MANIFEST, manifest)
            return out
        try:
            with cpu_threads(config.threads):
                return _train(config, out, manifest, key, stop_after, on_step)
        except torch.OutOfMemoryError:
            raise _oom_error(config) from None


def _train(
    config: TrainConfig, out: Path, manifest: dict[str, Any], key: str, stop_after: int | None,
    on_step: Sequence[StepCallback] = (),
) -> Path:  # fmt: skip
    from interp.models import load_vlm
    from interp.models.loading import adapters_on_execution_devices

    started = time.perf_counter()
    torch.manual_seed(config.seed)
    accelerator = _accelerator(config)
    n_proc = 1 if accelerator is None else accelerator.num_processes
    rank = 0 if accelerator is None else accelerator.process_index
    main = rank == 0
    device = config.device if accelerator is None else accelerator.device
    vlm = load_vlm(
        config.model, device=device, dtype=config.dtype, device_map=config.device_map,
        max_memory=config.max_memory,
    )  # fmt: skip
    encoded, too_long = tokenize_examples(
        vlm, load_examples(config), system=config.system, max_length=config.max_length,
        quiet=config.quiet or not main,
    )  # fmt: skip

    torch.manual_seed(config.seed)  # LoRA initialisation depends on the seed only
    with adapters_on_execution_devices(vlm.model):  # offloaded layers' adapters: real tensors
        model = prepare_model(vlm, config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    micro = MicroBatches(len(encoded), config.batch_size, config.seed)
    # Each of the n_proc processes takes grad_accum micro-batches of every optimizer step.
    per_step = config.grad_accum * n_proc
    total_steps = config.max_steps or math.ceil(config.epochs * micro.per_epoch / per_step)
    scheduler = _scheduler(config, optimizer, total_steps)

    step, history = _resume(out, key, model, optimizer, scheduler)
    if step == 0:
        torch.manual_seed(config.seed + 1)  # dropout stream, same as after a resume
    if accelerator is not None:
        torch.manual_seed(config.seed + 1 + rank)  # each process its own dropout stream
        model = accelerator.prepare_model(model)
    stop_at = total_steps if stop_after is None else min(total_steps, step + stop_after)

    progress = tqdm(
        total=total_steps, initial=step, desc="training", disable=config.quiet or not main,
        unit="step",
    )  # fmt: skip
    callbacks = [*on_step, *step_monitors(config, out)] if main else []
    for callback in callbacks:
        callback(step, vlm, total_steps)
    while step < total_steps:
        parts = [micro[step * per_step + i] for i in range(per_step)]
        step_items = [[encoded[j] for j in indices] for _, indices in parts]
        # Normalised by the answer tokens of the whole step (all processes), so accumulation
        # and data parallelism equal one large batch.
        n_tokens = max(1, sum(answer_tokens(items) for items in step_items))
        loss = _backward(model, vlm, step_items[rank::n_proc], n_tokens, accelerator)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        history.append(
            {
                "step": step,
                "epoch": parts[-1][0],
                "loss": loss,
                "lr": scheduler.get_last_lr()[0],
                "grad_norm": float(grad_norm),
                "tokens": n_tokens,
            }
        )
        progress.update(1)
        if step % config.log_every == 0:
            progress.set_postfix(loss=f"{loss:.4f}")
        due = config.save_every and step % config.save_every == 0
        if step < total_steps and (due or step == stop_at) and main:
            save_checkpoint(
                out, step, model=_unwrap(model, accelerator), optimizer=optimizer,
                scheduler=scheduler, key=key, history=history,
            )  # fmt: skip
        for callback in callbacks:
            callback(step, vlm, total_steps)
        if accelerator is not None:
            accelerator.wait_for_everyone()
        if step == stop_at and step < total_steps:
            progress.close()
            return out
    progress.close()

    model = _unwrap(model, accelerator)
    model.eval()
    if not main:
        accelerator.wait_for_everyone()
        return out
    save_result(vlm, model, config, out)
    manifest.update(
        complete=True,
        method=config.method,
        base_model=config.model,
        examples=len(encoded),
        skipped_too_long=too_long,
        steps=total_steps,
        processes=n_proc,
        trainable_parameters=sum(p.numel() for p in params),
        wall_time_s=round(time.perf_counter() - started, 3),
        final_loss=history[-1]["loss"] if history else None,
        history=history,
    )
    finish_run(out, manifest, history)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return out


def _resume(
    out: Path, key: str, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> tuple[int, list[dict[str, Any]]]:
    """``(step, history)`` of the newest readable checkpoint of this run (``(0, [])``: none).
    A corrupt one is reported in one line and removed, and the previous one is tried."""
    for path in checkpoints(out):
        if checkpoint_key(path) != key:
            continue
        try:
            return load_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler)
        except ValueError as error:
            warn(
                f"training checkpoint {path} is corrupt ({error}); removed it, resuming from "
                "an earlier checkpoint or step 0"
            )
            shutil.rmtree(path, ignore_errors=True)
    return 0, []


def _backward(
    model: nn.Module, vlm: Any, micro_batches: list[list[dict[str, torch.Tensor]]],
    n_tokens: int, accelerator: Any,
) -> float:  # fmt: skip
    """Forward and backward over this process's micro-batches of one optimizer step; returns
    the step's loss (summed over the processes)."""
    n_proc = 1 if accelerator is None else accelerator.num_processes
    total = 0.0
    for index, items in enumerate(micro_batches):
        batch = {k: v.to(vlm.device) for k, v in collate(items, vlm.tokenizer.pad_token_id).items()}
        for k, v in batch.items():
            if torch.is_floating_point(v):
                batch[k] = v.to(vlm.dtype)
        last = index == len(micro_batches) - 1
        # Gradients are synchronised once, on the last micro-batch of the step.
        with nullcontext() if accelerator is None or last else accelerator.no_sync(model):
            loss = answer_loss_sum(model, batch) / n_tokens
            # DDP averages gradients over processes; scale back to the sum.
            (loss * n_proc).backward()
        total += float(loss.detach())
    if accelerator is not None:
        total = float(accelerator.reduce(torch.tensor(total, device=vlm.device), "sum"))
    return total


def _scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    from transformers import get_scheduler

    return get_scheduler(
        config.scheduler,
        optimizer,
        num_warmup_steps=int(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )


def _accelerator(config: TrainConfig) -> Any:
    """An ``accelerate.Accelerator`` in a multi-process launch; ``None`` in one process."""
    if world_size() == 1:
        return None
    from accelerate import Accelerator

    return Accelerator(cpu=_on_cpu(config))


def _on_cpu(config: TrainConfig) -> bool:
    from interp.models import resolve_device

    return resolve_device(config.device).type == "cpu"


def _unwrap(model: nn.Module, accelerator: Any) -> nn.Module:
    return model if accelerator is None else accelerator.unwrap_model(model)


def _oom_error(config: TrainConfig) -> VSFAError:
    hints = [
        f"lower --batch-size (now {config.batch_size}) and raise --grad-accum "
        f"(now {config.grad_accum}) to keep the effective batch",
        "turn on --gradient-checkpointing",
    ]
    if config.method == "full":
        hints.append("use --method lora instead of full fine-tuning")
    else:
        hints.append(f"lower --lora-r (now {config.lora_r}) or --lora-targets")
    hints.append("set --max-length to drop the longest examples")
    return VSFAError("out of GPU memory while training: " + "; ".join(hints))
