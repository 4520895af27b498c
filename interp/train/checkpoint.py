"""Training checkpoints in safetensors + JSON: trainable weights, optimizer, scheduler, RNGs.

Nothing is pickled. A checkpoint folder is written under a temporary name and renamed, so a
killed run leaves either the previous checkpoint or the new one. Data order is a function of
(seed, epoch), so the step number is all the data state there is. A checkpoint is read whole
(:func:`read_checkpoint`) before anything is restored from it, so one that turns out corrupt
leaves the model untouched and the trainer can fall back to an earlier one or to step 0.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from interp.artifacts import atomic_dir, write_json_atomic

CHECKPOINTS = "checkpoints"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _load_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = meta["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, value in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = value
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    meta = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
    }
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, pos, has_gauss, gauss_np = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss_np))


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: param.detach().contiguous().cpu()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def save_checkpoint(
    run_dir: Path,
    step: int,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    key: str,
    history: list[dict[str, Any]],
    keep: int = 1,
) -> Path:
    """Write ``checkpoints/step_NNNNNNN`` atomically and keep only the newest ``keep``."""
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    with atomic_dir(final) as tmp:
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        opt_tensors, opt_meta = _optimizer_tensors(optimizer)
        rng_tensors, rng_meta = _rng_state()
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        scheduler_state = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
        write_json_atomic(
            tmp / "state.json",
            {
                "step": step,
                "key": key,
                "optimizer": opt_meta,
                "scheduler": scheduler_state,
                "rng": rng_meta,
                "history": history,
            },
        )
    for old in sorted(root.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoints(run_dir: Path) -> list[Path]:
    """The finished checkpoint folders of a run, newest first."""
    root = run_dir / CHECKPOINTS
    return [p for p in sorted(root.glob("step_*"), reverse=True) if (p / "state.json").exists()]


def latest_checkpoint(run_dir: Path) -> Path | None:
    done = checkpoints(run_dir)
    return done[0] if done else None


def checkpoint_key(path: Path) -> str | None:
    try:
        return json.loads((path / "state.json").read_text())["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Every file of a checkpoint, read and checked; raises ``ValueError`` naming what is wrong
    (a truncated or edited file), before anything is restored."""
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        data = {
            "state": state,
            "weights": load_file(str(path / "trainable.safetensors")),
            "optimizer": load_file(str(path / "optimizer.safetensors")),
            "rng": load_file(str(path / "rng.safetensors")),
        }
        for field in ("step", "optimizer", "scheduler", "rng", "history"):
            if field not in state:
                raise KeyError(field)
    except Exception as error:  # noqa: BLE001 - json, safetensors and OS errors alike
        raise ValueError(f"{type(error).__name__}: {error}") from None
    return data


def load_checkpoint(
    path: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> tuple[int, list[dict[str, Any]]]:
    """Restore weights, optimizer, scheduler and RNGs; returns (step, loss history). Raises
    ``ValueError`` (and restores nothing) when the checkpoint cannot be read."""
    data = read_checkpoint(path)
    state = data["state"]
    params = dict(model.named_parameters())
    wrong = sorted(
        name
        for name, value in data["weights"].items()
        if name not in params or params[name].shape != value.shape
    )
    if wrong:
        raise ValueError(f"trainable.safetensors does not fit the model: {wrong[:3]}")
    with torch.no_grad():
        for name, value in data["weights"].items():
            params[name].copy_(value.to(params[name].device))
    # a trainable weight is a real tensor (with a device map a frozen one may sit on ``meta``)
    device = next(p for p in model.parameters() if p.requires_grad).device
    opt_tensors = {k: v.to(device) for k, v in data["optimizer"].items()}
    # AdamW keeps its step counter on the CPU unless it is capturable/fused.
    for key in list(opt_tensors):
        if key.endswith(".step"):
            opt_tensors[key] = opt_tensors[key].cpu()
    _load_optimizer(optimizer, opt_tensors, state["optimizer"])
    scheduler.load_state_dict(
        {**state["scheduler"], "lr_lambdas": [None] * len(optimizer.param_groups)}
    )
    _set_rng_state(data["rng"], state["rng"])
    return int(state["step"]), list(state["history"])
