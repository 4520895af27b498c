"""Model diffing in SAE latent space: which latents did fine-tuning raise (or lower)?

Given one SAE and the same prompts cached from a base and a tuned model, :func:`diff_latents`
computes per latent the mean activation and firing frequency on each side, their change, and a
paired significance test across prompts (:mod:`interp.analysis.stats`). It then picks the
candidate persona latent(s) by a documented rule (:mod:`interp.analysis.selection`), collects
evidence for the top latents (:mod:`interp.analysis.evidence`) and a difference-of-means
direction as a non-SAE baseline, and writes them to ``latents.json``
(:mod:`interp.analysis.latents_file`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp.analysis.config import DiffConfig
from interp.analysis.evidence import latent_details
from interp.analysis.latents_file import write_latents
from interp.analysis.selection import BENIGN, HARMFUL, prompt_subsets, select_latents
from interp.analysis.sources import (
    ActivationSource,
    encode_stats,
    mean_activation,
    pair_prompts,
    resolve_hook,
)
from interp.analysis.stats import subset_stats
from interp.errors import VSFAError

__all__ = ["DiffConfig", "diff_latents"]


def _configured(config: DiffConfig | None, overrides: dict[str, Any]) -> DiffConfig:
    known = {f.name for f in dataclasses.fields(DiffConfig)}
    for key in overrides:
        if key not in known:
            raise TypeError(f"unknown option {key!r}")
    return dataclasses.replace(config or DiffConfig(), **overrides)


def diff_latents(
    sae: Any,
    base: ActivationSource,
    tuned: ActivationSource,
    *,
    config: DiffConfig | None = None,
    tokenizer: Any = None,
    unembedding: torch.Tensor | None = None,
    out: str | Path | None = None,
    sae_name: str = "",
    **overrides: Any,
) -> dict[str, Any]:
    """Diff an SAE's latents between base and tuned caches of the same prompts.

    ``overrides`` replace fields of ``config`` (``top=5``). Returns the ``latents.json`` dict
    (schema in ``docs/steering.md``). With ``out`` (a ``latents.json`` path) it and
    ``diff_of_means.safetensors`` beside it are written atomically. ``tokenizer`` decodes
    example tokens and logit effects; ``unembedding`` (``[vocab, d_model]``) enables the logit
    effect.
    """
    cfg = _configured(config, overrides)
    hook = resolve_hook(sae, [base, tuned], cfg.hook)
    base_rows, tuned_rows, kinds = pair_prompts(base, tuned)

    sides = {}
    for name, store in (("base", base), ("tuned", tuned)):
        prompt_index = store.tokens["prompt_index"].long()
        n_prompts = max(len(store.prompts), int(prompt_index.max()) + 1 if len(prompt_index) else 0)
        sides[name] = encode_stats(
            sae, store, hook, prompt_index, n_prompts, batch_rows=cfg.batch_rows, quiet=cfg.quiet
        )
        if int(sides[name]["rows"]) != len(prompt_index):
            raise VSFAError(
                f"the {name} cache has {int(sides[name]['rows'])} activation rows but "
                f"{len(prompt_index)} token rows; the folder is inconsistent"
            )
    base_pm = sides["base"]["prompt_mean"][base_rows].numpy()
    tuned_pm = sides["tuned"]["prompt_mean"][tuned_rows].numpy()

    subsets = prompt_subsets(kinds)
    stats = {name: subset_stats(base_pm, tuned_pm, rows, cfg) for name, rows in subsets.items()}
    overall = stats["all"]

    base_mean = sides["base"]["mean"].numpy()
    tuned_mean = sides["tuned"]["mean"].numpy()
    delta = tuned_mean - base_mean
    order = np.argsort(-delta, kind="stable")
    increased = [int(i) for i in order[: cfg.top] if delta[i] > 0]
    decreased = [int(i) for i in order[::-1][: max(1, cfg.top // 2)] if delta[i] < 0]
    selection = select_latents(
        stats,
        alpha=cfg.alpha,
        n_select=cfg.select,
        n_runners_up=cfg.n_runners_up,
        benign_penalty=cfg.benign_penalty,
    )

    def row(i: int) -> dict[str, Any]:
        entry = {
            "index": i,
            "base_mean": float(base_mean[i]),
            "tuned_mean": float(tuned_mean[i]),
            "delta": float(delta[i]),
            "base_freq": float(sides["base"]["freq"][i]),
            "tuned_freq": float(sides["tuned"]["freq"][i]),
            "p_value": float(overall.p_value[i]),
            "p_adjusted": float(overall.p_adjusted[i]),
            "effect_size": float(overall.effect_size[i]),
            "direction": "increased" if delta[i] > 0 else "decreased",
        }
        for kind in (HARMFUL, BENIGN):
            if kind in stats:
                entry[f"{kind}_delta"] = float(stats[kind].delta[i])
                entry[f"{kind}_p_adjusted"] = float(stats[kind].p_adjusted[i])
        return entry

    listed = increased + [i for i in decreased if i not in increased]
    detailed = list(dict.fromkeys(selection["latents"] + selection["runners_up"] + listed))
    details = latent_details(sae, base, tuned, hook, detailed, cfg, tokenizer, unembedding)

    direction = mean_activation(tuned, hook, cfg.batch_rows) - mean_activation(
        base, hook, cfg.batch_rows
    )
    result: dict[str, Any] = {
        "sae": sae_name,
        "hook_name": hook,
        "d_sae": int(sae.cfg.d_sae),
        "n_prompts": len(base_rows),
        "n_tokens": int(sides["base"]["rows"]),
        "n_tokens_tuned": int(sides["tuned"]["rows"]),
        "prompt_kinds": {name: len(rows) for name, rows in subsets.items()},
        "test": cfg.test,
        "alpha": cfg.alpha,
        "n_significant_increased": int(
            ((overall.delta > 0) & (overall.p_adjusted < cfg.alpha)).sum()
        ),
        "latents": [row(i) for i in listed],
        "selected": selection,
        "details": details,
        "diff_of_means": {
            "norm": float(direction.norm()),
            "file": "diff_of_means.safetensors",
            # also inline, so a latents.json written by other code still carries the baseline
            "vector": [round(float(v), 7) for v in direction],
        },
        "config": dataclasses.asdict(cfg),
        "sources": {
            "base": str(getattr(base, "path", "")),
            "tuned": str(getattr(tuned, "path", "")),
            "base_model": base.manifest.get("model"),
            "tuned_model": tuned.manifest.get("model"),
            "tuned_adapter": tuned.manifest.get("adapter"),
        },
    }
    if out is not None:
        write_latents(out, result)
    return result
