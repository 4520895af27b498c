"""Resumable SAE training checkpoints: the SAE, Adam's state and the dead-latent counters.

``out/checkpoint/state.safetensors`` holds the tensors (``sae.*``, ``adam.<param>.<key>``,
``fired_ago``) and ``out/checkpoint/state.json`` the step and the loss history so far; both are
written atomically, and the folder is removed once the SAE is saved.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from interp.artifacts import atomic_path, read_json, write_json_atomic

FOLDER = "checkpoint"


def save_checkpoint(
    out: Path, sae: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Write the SAE, the optimizer state and ``state`` (``step``, ``history``, ``fired_ago``)."""
    tensors = {f"sae.{name}": value.detach().cpu() for name, value in sae.state_dict().items()}
    names = {id(p): n for n, p in sae.named_parameters()}
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor):
                    tensors[f"adam.{names[id(param)]}.{key}"] = value.detach().cpu().reshape(-1)
    tensors["fired_ago"] = state.pop("fired_ago").cpu()
    folder = out / FOLDER
    with atomic_path(folder / "state.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    write_json_atomic(folder / "state.json", state)


@dataclass
class Checkpoint:
    """A checkpoint read from disk: ``step`` steps done, their ``history``, the tensors."""

    step: int
    history: list[dict[str, float]]
    tensors: dict[str, torch.Tensor]

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


def read_checkpoint(out: Path, device: torch.device | str) -> Checkpoint | None:
    """The checkpoint in ``out`` (tensors on ``device``), or None when there is none."""
    folder = out / FOLDER
    if not (folder / "state.json").exists():
        return None
    state = read_json(folder / "state.json")
    tensors = load_file(str(folder / "state.safetensors"), device=str(device))
    return Checkpoint(int(state["step"]), list(state["history"]), tensors)


def remove_checkpoint(out: Path) -> None:
    if (out / FOLDER).exists():
        shutil.rmtree(out / FOLDER)
