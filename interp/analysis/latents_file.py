"""``latents.json`` and ``diff_of_means.safetensors``: writing them, reading them back, and
checking that what scores the latents did not select them (:func:`check_disjoint`)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from interp.errors import VSFAError


def write_latents(out: str | Path, result: dict[str, Any]) -> Path:
    """Write ``latents.json`` and ``diff_of_means.safetensors`` beside it (both atomic)."""
    from safetensors.torch import save_file

    from interp.artifacts import atomic_path, write_json_atomic

    out = Path(out)
    if out.suffix != ".json":
        out = out / "latents.json"
    vector = (result.get("diff_of_means") or {}).get("vector")
    if vector is not None:
        direction = torch.tensor(vector, dtype=torch.float32)
        with atomic_path(out.parent / result["diff_of_means"]["file"]) as tmp:
            save_file(
                {"direction": direction.float().contiguous()},
                str(tmp),
                metadata={"hook_name": result["hook_name"]},
            )
    write_json_atomic(out, _finite(result))
    return out


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf; write them as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def load_diff_of_means(path: str | Path) -> torch.Tensor:
    """The difference-of-means direction of a ``latents.json`` (its safetensors file beside it,
    else the inline vector), or of a ``.safetensors`` file holding ``direction``."""
    from safetensors.torch import load_file

    from interp.artifacts import read_json

    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.exists():
            raise VSFAError(f"{path} does not exist")
        tensors = load_file(str(path))
        if "direction" not in tensors:
            raise VSFAError(f"{path} holds no 'direction' tensor")
        return tensors["direction"]
    data = read_json(path)
    entry = data.get("diff_of_means") or {}
    file = path.parent / entry.get("file", "diff_of_means.safetensors")
    if file.exists():
        return load_file(str(file))["direction"]
    if entry.get("vector") is not None:
        return torch.tensor(entry["vector"], dtype=torch.float32)
    raise VSFAError(f"{path} has no difference-of-means direction (and {file} is missing)")


def selected_latents(path: str | os.PathLike) -> int | list[int]:
    """The selected latent of a ``latents.json`` (a list when the diff selected several); a
    clear error when it selected none."""
    from interp.artifacts import read_json
    from interp.sae.latents import as_latents

    data = read_json(path)
    selected = data.get("selected") if isinstance(data, dict) else None
    if selected is not None and not isinstance(selected, dict):
        raise VSFAError(
            f"{path}: 'selected' is {type(selected).__name__} {selected!r}; expected an object "
            'with a list of latent indices ({"latents": [12]}), as vsfa latents diff writes'
        )
    chosen = (selected or {}).get("latents") or []
    if isinstance(chosen, int) and not isinstance(chosen, bool):
        chosen = [chosen]
    if not isinstance(chosen, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in chosen
    ):
        raise VSFAError(
            f"{path}: selected.latents is {chosen!r}; expected a list of latent indices (>= 0)"
        )
    if not chosen:
        raise VSFAError(f"{path}: the diff selected no latent (nothing significant); pass --latent")
    return as_latents(chosen)


def check_disjoint(
    latents: str | os.PathLike | Mapping[str, Any],
    scored_ids: Iterable[str],
    *,
    what: str = "the scored items",
) -> None:
    """Raise a :class:`VSFAError` when any of ``scored_ids`` (the prompt or item ids a sweep or
    an evaluation will score) selected the latents of ``latents`` (a ``latents.json`` path or
    its dict): scoring them would be circular."""
    from interp.artifacts import read_json

    where = "latents.json" if isinstance(latents, Mapping) else str(latents)
    data = latents if isinstance(latents, Mapping) else read_json(latents)
    chosen = data.get("selection_ids")
    if chosen is None:
        raise VSFAError(
            f"{where} does not record which prompts selected its latents (no selection_ids); "
            "rerun vsfa latents diff to check that the scored items were held out"
        )
    scored = [str(i) for i in scored_ids]
    overlap = sorted(set(scored) & {str(i) for i in chosen})
    if overlap:
        shown = ", ".join(repr(i) for i in overlap[:3]) + (", ..." if len(overlap) > 3 else "")
        split = (data.get("split") or {}).get("kind", "none")
        raise VSFAError(
            f"{where}: {len(overlap)} of {what} ({len(scored)} ids) selected its latents "
            f"({shown}; split {split}); score on its eval_ids or other items, or rediff with "
            "those held out (--split template, --eval-ids FILE)"
        )
