"""What diffing reads from two activation folders: the shared prompts, the hook, SAE codes.

The folders are ``interp.cache.ActivationStore`` (or anything with its interface,
:class:`ActivationSource`); rows are read shard by shard, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from interp.errors import VSFAError
from interp.sae.latents import sae_hook_name


class ActivationSource(Protocol):
    """What diffing reads from an activation folder (``interp.cache.ActivationStore``)."""

    manifest: dict[str, Any]

    def load(self, hook_name: str) -> torch.Tensor: ...

    @property
    def tokens(self) -> dict[str, torch.Tensor]: ...

    @property
    def prompts(self) -> list[dict[str, Any]]: ...


def _chunks(store: ActivationSource, hook: str, rows: int) -> Iterator[torch.Tensor]:
    if hasattr(store, "iter_shards"):  # bounded memory on the on-disk store
        for shard in store.iter_shards(hook):
            yield from shard.split(rows)
    else:
        yield from store.load(hook).split(rows)


@torch.no_grad()
def encode_stats(
    sae: Any,
    store: ActivationSource,
    hook: str,
    prompt_rows: torch.Tensor,
    n_prompts: int,
    *,
    batch_rows: int,
    quiet: bool = False,
    row_groups: torch.Tensor | None = None,
    n_groups: int = 0,
) -> dict[str, torch.Tensor]:
    """Token-level mean and firing frequency, and per-prompt means, of every latent.

    With ``row_groups`` (a group number below ``n_groups`` per row) also each group's sum,
    count of firing rows and row count (``group_sum``, ``group_fired``, ``group_rows``).
    """
    d_sae = int(sae.cfg.d_sae)
    device = sae.W_dec.device
    total = torch.zeros(d_sae, dtype=torch.float64)
    fired = torch.zeros(d_sae, dtype=torch.float64)
    per_prompt = torch.zeros(n_prompts, d_sae, dtype=torch.float64)
    group_sum = torch.zeros(n_groups, d_sae, dtype=torch.float64)
    group_fired = torch.zeros(n_groups, d_sae, dtype=torch.float64)
    start = 0
    bar = tqdm(total=len(prompt_rows), disable=quiet, desc="encode", unit="tok")
    for chunk in _chunks(store, hook, batch_rows):
        acts = sae.encode(chunk.to(device=device, dtype=sae.W_dec.dtype)).double().cpu()
        index = prompt_rows[start : start + len(acts)]
        if row_groups is not None:
            groups = row_groups[start : start + len(acts)]
            group_sum.index_add_(0, groups, acts)
            group_fired.index_add_(0, groups, (acts > 0).double())
        start += len(acts)
        bar.update(len(acts))
        total += acts.sum(0)
        fired += (acts > 0).sum(0)
        per_prompt.index_add_(0, index, acts)
    bar.close()
    rows = start
    counts = torch.bincount(prompt_rows, minlength=n_prompts).clamp(min=1).double()
    out = {
        "mean": total / max(rows, 1),
        "freq": fired / max(rows, 1),
        "prompt_mean": per_prompt / counts[:, None],
        "rows": torch.tensor(rows),
    }
    if row_groups is not None:
        out["group_sum"], out["group_fired"] = group_sum, group_fired
        out["group_rows"] = torch.bincount(row_groups[:rows], minlength=n_groups).double()
    return out


@torch.no_grad()
def encode_columns(
    sae: Any, store: ActivationSource, hook: str, latents: list[int], rows: int
) -> torch.Tensor:
    """Activations of a few latents on every row, ``[rows, len(latents)]``."""
    device = sae.W_dec.device
    parts = [
        sae.encode(chunk.to(device=device, dtype=sae.W_dec.dtype))[:, latents].float().cpu()
        for chunk in _chunks(store, hook, rows)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, len(latents))


@torch.no_grad()
def mean_activation(
    store: ActivationSource, hook: str, rows: int, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """The mean residual over every cached row at ``hook`` (float32); with ``keep`` (a bool
    per row) over the kept rows only."""
    total, count, start = None, 0, 0
    for chunk in _chunks(store, hook, rows):
        if keep is not None:
            chunk, start = chunk[keep[start : start + len(chunk)]], start + len(chunk)
        part = chunk.double().sum(0)
        total = part if total is None else total + part
        count += len(chunk)
    if total is None or count == 0:
        raise VSFAError("activation folder holds no rows")
    return (total / count).float()


def prompt_key(prompt: dict[str, Any], position: int) -> str:
    """The id that matches a prompt record across caches."""
    return str(prompt.get("id", prompt.get("index", position)))


@dataclass
class PairedPrompts:
    """The prompts both caches hold: their index in each cache, ids, kinds and base records."""

    base_rows: list[int]
    tuned_rows: list[int]
    ids: list[str]
    kinds: list[str]
    records: list[dict[str, Any]]


def pair_prompts(base: ActivationSource, tuned: ActivationSource) -> PairedPrompts:
    """The same prompts in both caches (matched by prompt id), in the base cache's order."""
    tuned_at = {prompt_key(p, i): int(p.get("index", i)) for i, p in enumerate(tuned.prompts)}
    paired = PairedPrompts([], [], [], [], [])
    for i, prompt in enumerate(base.prompts):
        k = prompt_key(prompt, i)
        if k in tuned_at:
            paired.base_rows.append(int(prompt.get("index", i)))
            paired.tuned_rows.append(tuned_at[k])
            paired.ids.append(k)
            paired.kinds.append(str(prompt.get("kind") or ""))
            paired.records.append(prompt)
    if len(paired.ids) < 2:
        raise VSFAError(
            f"the base and tuned caches share {len(paired.ids)} prompt id(s); cache the same "
            "prompts from both models (vsfa cache --prompts ... for each)"
        )
    return paired


def resolve_hook(sae: Any, stores: Sequence[ActivationSource], hook_name: str | None) -> str:
    """The hook to diff at (``hook_name``, else the SAE's, else the caches' only hook), checked
    to be cached in every store with the SAE's width."""
    hooks = [list(store.manifest.get("hook_names", [])) for store in stores]
    if hook_name is None:
        try:
            hook_name = sae_hook_name(sae)
        except VSFAError:
            if len(hooks[0]) != 1:
                raise VSFAError(
                    f"the SAE does not record its hook and the cache holds {hooks[0]}; pass --hook"
                ) from None
            hook_name = hooks[0][0]
    for store, names in zip(stores, hooks):
        if names and hook_name not in names:
            where = getattr(store, "path", "the activation folder")
            raise VSFAError(f"{where} has no activations for {hook_name!r}; it holds {names}")
        d_model = store.manifest.get("d_model")
        if d_model is not None and int(d_model) != int(sae.cfg.d_in):
            where = getattr(store, "path", "the activation folder")
            raise VSFAError(
                f"{where}: activations have d_model {d_model}, the SAE reads {sae.cfg.d_in}"
            )
    return hook_name
