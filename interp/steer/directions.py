"""Steering directions: where a direction vector comes from, and random ones of the same norm.

A direction is a ``[d_model]`` float32 vector at one hook. :func:`load_direction` reads it from

* a tensor (or anything ``torch.as_tensor`` takes);
* ``FILE.safetensors:KEY``: one tensor of a safetensors file, e.g. ``persona.safetensors`` of
  ``vsfa persona extract`` (keys ``persona/<hook>``: mean vigilant minus mean loose at the
  decision position; ``probe/<hook>``: the logistic probe's weight vector);
* ``FILE.safetensors``: its only tensor, or its ``direction`` (the diff's
  ``diff_of_means.safetensors``);
* ``latents.json``: the diff's difference of means (tuned minus base residual mean).

:func:`direction_hook` says which hook a direction belongs to, where the source records it.
:func:`random_directions` draws seeded random directions of a given norm (the control of a
direction: only its orientation differs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from interp.errors import VSFAError
from interp.registry import nearest

DirectionSpec = Any
"""A tensor, ``FILE.safetensors:KEY``, ``FILE.safetensors`` or ``latents.json``."""


def split_spec(spec: str | os.PathLike) -> tuple[Path, str | None]:
    """``"dir/persona.safetensors:persona/blocks.3.hook_resid_post"`` -> (path, key)."""
    text = str(spec)
    head, sep, key = text.rpartition(".safetensors:")
    if sep:
        return Path(head + ".safetensors"), key
    return Path(text), None


def _safetensors_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())


def _read_tensor(path: Path, key: str | None) -> torch.Tensor:
    from safetensors import safe_open

    if not path.exists():
        raise VSFAError(f"direction file {path} does not exist")
    keys = _safetensors_keys(path)
    if key is None:
        if len(keys) == 1:
            key = keys[0]
        elif "direction" in keys:
            key = "direction"
        else:
            raise VSFAError(
                f"{path} holds {len(keys)} tensors ({', '.join(keys[:6])}...); name one as "
                f"{path}:KEY"
            )
    if key not in keys:
        raise VSFAError(f"{path} has no tensor {key!r}{nearest(key, keys)}")
    with safe_open(str(path), framework="pt") as handle:
        return handle.get_tensor(key)


def load_direction(spec: DirectionSpec, d_model: int | None = None) -> torch.Tensor:
    """The direction of ``spec`` as a detached float32 ``[d_model]`` vector; one clear error
    for a missing file or key, a tensor that is not a vector, non-finite values, or (when
    ``d_model`` is given) the wrong width."""
    where = "steering direction"
    if isinstance(spec, torch.Tensor):
        vector = spec.detach()
    elif isinstance(spec, (str, os.PathLike)):
        path, key = split_spec(spec)
        where = str(spec)
        if path.suffix == ".safetensors":
            vector = _read_tensor(path, key)
        elif path.suffix == ".json":
            from interp.analysis.latents_file import load_diff_of_means

            vector = load_diff_of_means(path)
        else:
            raise VSFAError(f"direction {spec}: expected FILE.safetensors[:KEY] or a latents.json")
    else:
        vector = torch.as_tensor(spec, dtype=torch.float32)
    if vector.dim() == 0 or vector.dim() > 2 or (vector.dim() == 2 and vector.shape[0] != 1):
        raise VSFAError(f"{where} is not a vector (give one [d_model] tensor)")
    vector = vector.float().reshape(-1)
    if not torch.isfinite(vector).all():
        raise VSFAError(f"{where} has non-finite values")
    if d_model is not None and vector.numel() != d_model:
        raise VSFAError(f"{where} has {vector.numel()} dimensions; the model has d_model {d_model}")
    return vector.clone()


def direction_hook(spec: DirectionSpec) -> str | None:
    """The hook a direction source records: the ``<hook>`` of a ``persona/<hook>`` or
    ``probe/<hook>`` key, a safetensors file's ``hook_name`` metadata, a ``latents.json``'s
    ``hook_name``; ``None`` when it records none."""
    if not isinstance(spec, (str, os.PathLike)):
        return None
    path, key = split_spec(spec)
    if key is not None and "/" in key:
        return key.split("/", 1)[1]
    if path.suffix == ".json" and path.exists():
        from interp.artifacts import read_json

        return read_json(path).get("hook_name")
    if path.suffix == ".safetensors" and path.exists():
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("hook_name")
    return None


def random_directions(n: int, d_model: int, norm: float, seed: int) -> list[torch.Tensor]:
    """``n`` seeded random directions (isotropic Gaussian, normalised) of length ``norm``: the
    same seed gives the same orientations at any norm."""
    if n < 0:
        raise VSFAError(f"random directions: n must be >= 0, got {n}")
    if not norm > 0:
        raise VSFAError(f"random directions need a positive norm, got {norm}")
    g = torch.Generator().manual_seed(int(seed))
    draws = torch.randn(n, d_model, generator=g, dtype=torch.float64)
    units = draws / draws.norm(dim=1, keepdim=True)
    return [(unit * float(norm)).float() for unit in units]
