"""The sae_lens metadata of a trained SAE (``cfg.json``'s ``metadata``), and the token dataset
that lets sae_lens's own tools read the model the way the SAE saw it.

With this metadata a saved SAE works in sae_lens as saved::

    sae = SAE.load_from_disk(folder)
    bridge = boot_bridge(load_vlm(sae.cfg.metadata.model_path))   # interp.hooks.bridge
    store = ActivationsStore.from_sae(bridge, sae, token_dataset(sae.cfg.metadata), ...)
    run_evals(sae, store, bridge, ActivationScaler(), EvalConfig(...))

Fields: ``model_name`` (the hub id, or the folder's name for a local model) and ``model_path``
(what was loaded), ``model_class_name`` (the ``transformers`` class) and ``family``,
``hook_name``, ``prepend_bos`` (whether the cached prompts begin with the tokenizer's BOS),
``context_size`` (the longest cached prompt, in tokens), ``dataset_path`` (the activation
folders), ``adapters`` (each folder's adapter, ``null`` for the base model), ``training_tokens``
(activation rows the SAE was trained on) and ``neuronpedia_id`` (``null`` until uploaded).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interp.artifacts import write_json_atomic
from interp.cache.store import ActivationStore
from interp.errors import VSFAError
from interp.models.families import FAMILIES


def _model_name(model: str) -> str:
    """The hub id of a model, or the name of its local folder."""
    path = Path(model)
    return path.resolve().name if path.exists() else model


def _bos_token_id(model: str) -> int | None:
    """The BOS id of the model's tokenizer (``None`` where no tokenizer is at hand)."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model, local_files_only=True).bos_token_id
    except Exception:  # not on disk (a hub id offline) or no tokenizer: unknown
        return None


def sae_metadata(
    stores: Sequence[ActivationStore], hook_name: str, *, model: str, training_tokens: int
) -> dict[str, Any]:
    """The sae_lens metadata of an SAE trained on ``stores`` at ``hook_name`` of ``model``."""
    family_name = stores[0].manifest.get("family") if stores else None
    family = FAMILIES.get(family_name) if family_name in FAMILIES else None
    token_ids = [record["token_ids"] for store in stores for record in store.prompts]
    bos = _bos_token_id(model)
    prepend_bos = bool(token_ids) and bos is not None and all(t[:1] == [bos] for t in token_ids)
    return {
        "model_name": _model_name(model),
        "model_path": model,
        "model_class_name": family.model_class if family else None,
        "family": family_name,
        "model_from_pretrained_kwargs": {},
        "hook_name": hook_name,
        "prepend_bos": prepend_bos,
        "context_size": max((len(t) for t in token_ids), default=0),
        "dataset_path": ",".join(str(s.path) for s in stores),
        "adapters": [s.manifest.get("adapter") for s in stores],
        "training_tokens": int(training_tokens),
        "neuronpedia_id": None,
    }


def update_sae_metadata(folder: str | Path, metadata: dict[str, Any]) -> Path:
    """Merge ``metadata`` into a saved SAE's ``cfg.json`` (written atomically; the weights are
    untouched), for an SAE saved before a field existed."""
    path = Path(folder) / "cfg.json"
    if not path.exists():
        raise VSFAError(f"{folder} is not a saved SAE: it has no cfg.json")
    cfg = json.loads(path.read_text())
    cfg["metadata"] = {**(cfg.get("metadata") or {}), **metadata}
    return write_json_atomic(path, cfg)


def token_dataset(
    metadata: Any,
    *,
    stores: Sequence[str | Path] | None = None,
    text_only: bool = True,
    context_size: int | None = None,
) -> Any:
    """A ``datasets.Dataset`` with a ``tokens`` column for sae_lens's ``ActivationsStore``.

    The cached prompts of the SAE's activation folders (``metadata.dataset_path``, or
    ``stores``) are concatenated and cut into rows of ``context_size`` tokens (default the
    SAE's). ``text_only`` keeps the prompts without an image (sae_lens feeds tokens only).
    """
    import datasets

    folders = stores or [p for p in str(metadata["dataset_path"] or "").split(",") if p]
    size = int(context_size or metadata["context_size"] or 0)
    if not folders or size <= 0:
        raise VSFAError("the SAE's metadata names no activation folders or no context_size")
    stream: list[int] = []
    for folder in folders:
        for record in ActivationStore(folder).prompts:
            if not (text_only and record.get("image")):
                stream.extend(record["token_ids"])
    rows = [stream[i : i + size] for i in range(0, len(stream) - size + 1, size)]
    if not rows:
        raise VSFAError(
            f"the prompts in {', '.join(map(str, folders))} hold fewer than {size} tokens"
        )
    return datasets.Dataset.from_dict({"tokens": rows})
