"""Resumable SAE training checkpoints: the SAE, Adam's state, the dead-latent counters and where
the data stream stood.

``out/checkpoint/step_NNNNNNNNN/`` holds ``state.safetensors`` (``sae.*``,
``adam.<param>.<key>``, ``fired_ago``) and ``state.json`` (the step, the loss history, the
settings that decide the training, the stream position and the tensors file's sha256). Each
checkpoint folder is written under a temporary name and renamed once, so a kill leaves the
previous checkpoint or the new one, never one file of each; the two newest are kept. A
checkpoint that fails to read back (truncated, edited, its hash wrong) is reported in one line
and the previous one is used. The folder is removed once the SAE is saved.

With several processes rank 0 writes the checkpoints and chooses the one to resume from; every
rank restores that same folder (:func:`read_checkpoint_folder`). A checkpoint holds the global
state only (the data stream is the same on every rank), so it resumes under any process count.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from interp.artifacts import atomic_dir, file_sha256, write_json_atomic
from interp.errors import VSFAError, warn

FOLDER = "checkpoint"
KEEP = 2
TENSORS = "state.safetensors"
STATE = "state.json"


def save_checkpoint(
    out: Path, sae: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> Path:
    """Write the SAE, the optimizer state and ``state`` (``step``, ``history``, ``fired_ago``,
    and whatever else the caller records) as a new checkpoint folder; returns it."""
    tensors = {f"sae.{name}": value.detach().cpu() for name, value in sae.state_dict().items()}
    names = {id(p): n for n, p in sae.named_parameters()}
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor):
                    tensors[f"adam.{names[id(param)]}.{key}"] = value.detach().cpu().reshape(-1)
    state = dict(state)
    tensors["fired_ago"] = state.pop("fired_ago").cpu()
    root = out / FOLDER
    final = root / f"step_{int(state['step']):09d}"
    with atomic_dir(final) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / TENSORS))
        state["sha256"] = file_sha256(tmp / TENSORS)
        write_json_atomic(tmp / STATE, state)
    for old in sorted(root.glob("step_*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


@dataclass
class Checkpoint:
    """A checkpoint read from disk: ``step`` steps done, their ``history``, the tensors, and the
    recorded ``state`` (``config``, ``stream`` ...)."""

    step: int
    history: list[dict[str, float]]
    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]
    path: Path

    def restore(self, sae: torch.nn.Module, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """Load the SAE's and Adam's state; returns the ``fired_ago`` counters."""
        tensors = self.tensors
        sae.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("sae.")})
        for name, param in sae.named_parameters():
            prefix = f"adam.{name}."
            adam = {k.split(".")[-1]: v for k, v in tensors.items() if k.startswith(prefix)}
            if adam:
                optimizer.state[param] = {
                    key: value.reshape(param.shape) if value.numel() == param.numel() else value
                    for key, value in adam.items()
                }
                if "step" in optimizer.state[param]:
                    optimizer.state[param]["step"] = optimizer.state[param]["step"].reshape(())
        return tensors["fired_ago"]


def _read(folder: Path, device: torch.device | str) -> Checkpoint:
    state = json.loads((folder / STATE).read_text(encoding="utf-8"))
    if not isinstance(state, dict) or "step" not in state or "history" not in state:
        raise ValueError(f"{STATE} lacks step or history")
    expected = state.get("sha256")
    if expected is not None and file_sha256(folder / TENSORS) != expected:
        raise ValueError(f"{TENSORS} does not match the hash in {STATE}")
    tensors = load_file(str(folder / TENSORS), device=str(device))
    if "fired_ago" not in tensors:
        raise ValueError(f"{TENSORS} lacks fired_ago")
    return Checkpoint(int(state["step"]), list(state["history"]), tensors, state, folder)


def read_checkpoint_folder(folder: Path, device: torch.device | str) -> Checkpoint:
    """The checkpoint in ``folder`` (one ``step_N``), as another rank chose it; raises a one-line
    :class:`VSFAError` when it cannot be read."""
    try:
        return _read(folder, device)
    except Exception as error:  # noqa: BLE001 - json, safetensors and OS errors alike
        raise VSFAError(
            f"SAE checkpoint {folder} is unreadable ({type(error).__name__}: {error})"
        ) from None


def read_checkpoint(out: Path, device: torch.device | str) -> Checkpoint | None:
    """The newest readable checkpoint in ``out`` (tensors on ``device``), or None when there is
    none; an unreadable one is reported in one line and the previous one tried."""
    for folder in sorted((out / FOLDER).glob("step_*"), reverse=True):
        try:
            return _read(folder, device)
        except Exception as error:  # noqa: BLE001 - json, safetensors and OS errors alike
            warn(
                f"SAE checkpoint {folder} is unreadable ({type(error).__name__}: {error}); "
                "using the previous one"
            )
    return None


def remove_checkpoint(out: Path) -> None:
    if (out / FOLDER).exists():
        shutil.rmtree(out / FOLDER)
