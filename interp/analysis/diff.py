"""Model diffing in SAE latent space: which latents did fine-tuning raise (or lower)?

Given one SAE and the same prompts cached from a base and a tuned model, :func:`diff_latents`
computes per latent the mean activation and firing frequency on each side, their change, and a
paired significance test across prompts (:mod:`interp.analysis.stats`). The shared prompts are
split into those that select and those held out (:mod:`interp.analysis.split`); on the
selection prompts only, it ranks the latents, picks the candidate persona latent(s) by a rule
fixed in code (:mod:`interp.analysis.selection`) and takes a difference-of-means direction as a
non-SAE baseline; the held-out prompts' statistics are reported beside them. It collects
evidence for the top latents (:mod:`interp.analysis.evidence`) and writes it all to
``latents.json`` (:mod:`interp.analysis.latents_file`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp.analysis.config import DiffConfig
from interp.analysis.evidence import latent_details
from interp.analysis.examples import EXAMPLE_RULE
from interp.analysis.latents_file import write_latents
from interp.analysis.selection import BENIGN, HARMFUL, prompt_subsets, select_latents
from interp.analysis.sources import (
    ActivationSource,
    PairedPrompts,
    encode_stats,
    mean_activation,
    pair_prompts,
    resolve_hook,
)
from interp.analysis.split import PromptSplit, split_prompts
from interp.analysis.stats import SubsetStats, significance_rule, significant, subset_stats
from interp.analysis.views import density_histogram
from interp.errors import VSFAError

__all__ = ["DiffConfig", "diff_latents"]


def _configured(config: DiffConfig | None, overrides: dict[str, Any]) -> DiffConfig:
    known = {f.name for f in dataclasses.fields(DiffConfig)}
    for key in overrides:
        if key not in known:
            raise TypeError(f"unknown option {key!r}")
    return dataclasses.replace(config or DiffConfig(), **overrides)


# rows of the token-level sums: the selection prompts, the eval prompts, every other row
SELECTION, EVAL, OTHER = 0, 1, 2


def _row_groups(store: ActivationSource, rows: list[int], split: PromptSplit) -> torch.Tensor:
    """The split of every token row of one cache (``rows``: each shared prompt's index there)."""
    prompt_index = store.tokens["prompt_index"].long()
    n_prompts = max(len(store.prompts), int(prompt_index.max()) + 1 if len(prompt_index) else 0)
    of_prompt = torch.full((n_prompts,), OTHER, dtype=torch.long)
    for group, positions in ((SELECTION, split.selection), (EVAL, split.eval)):
        of_prompt[[rows[i] for i in positions]] = group
    return of_prompt[prompt_index]


def _encode(sae, base, tuned, hook, paired, split, cfg) -> dict[str, dict[str, torch.Tensor]]:
    sides = {}
    for name, store, rows in (
        ("base", base, paired.base_rows),
        ("tuned", tuned, paired.tuned_rows),
    ):
        prompt_index = store.tokens["prompt_index"].long()
        n_prompts = max(len(store.prompts), int(prompt_index.max()) + 1 if len(prompt_index) else 0)
        groups = None if split.kind == "none" else _row_groups(store, rows, split)
        sides[name] = encode_stats(
            sae, store, hook, prompt_index, n_prompts, batch_rows=cfg.batch_rows,
            quiet=cfg.quiet, row_groups=groups, n_groups=3,
        )  # fmt: skip
        if groups is not None:
            sides[name]["row_groups"] = groups
        if int(sides[name]["rows"]) != len(prompt_index):
            raise VSFAError(
                f"the {name} cache has {int(sides[name]['rows'])} activation rows but "
                f"{len(prompt_index)} token rows; the folder is inconsistent"
            )
    return sides


def _token_means(side: dict[str, torch.Tensor], group: int | None) -> dict[str, np.ndarray]:
    """Token-level mean and firing frequency over every row (``group`` None) or one group's."""
    if group is None:
        return {"mean": side["mean"].numpy(), "freq": side["freq"].numpy()}
    rows = max(float(side["group_rows"][group]), 1.0)
    return {
        "mean": (side["group_sum"][group] / rows).numpy(),
        "freq": (side["group_fired"][group] / rows).numpy(),
    }


class _Part:
    """One split's statistics: token-level means per side and paired per-prompt tests."""

    def __init__(self, sides, group, base_pm, tuned_pm, kinds, positions, cfg) -> None:
        self.base = _token_means(sides["base"], group)
        self.tuned = _token_means(sides["tuned"], group)
        self.delta = self.tuned["mean"] - self.base["mean"]
        self.subsets = prompt_subsets(kinds, positions)
        self.stats: dict[str, SubsetStats] = {
            name: subset_stats(base_pm, tuned_pm, rows, cfg) for name, rows in self.subsets.items()
        }

    def n_significant_increased(self, cfg: DiffConfig) -> int:
        overall = self.stats["all"]
        floors = {"alpha": cfg.alpha, "min_effect_size": cfg.min_effect_size,
                  "min_relative_delta": cfg.min_relative_delta}  # fmt: skip
        return int(((overall.delta > 0) & significant(overall, **floors)).sum())

    def row(self, i: int) -> dict[str, Any]:
        overall = self.stats["all"]
        entry = {
            "base_mean": float(self.base["mean"][i]),
            "tuned_mean": float(self.tuned["mean"][i]),
            "delta": float(self.delta[i]),
            "base_freq": float(self.base["freq"][i]),
            "tuned_freq": float(self.tuned["freq"][i]),
            "p_value": float(overall.p_value[i]),
            "p_adjusted": float(overall.p_adjusted[i]),
            "effect_size": float(overall.effect_size[i]),
            "direction": "increased" if self.delta[i] > 0 else "decreased",
        }
        for kind in (HARMFUL, BENIGN):
            if kind in self.stats:
                entry[f"{kind}_delta"] = float(self.stats[kind].delta[i])
                entry[f"{kind}_p_adjusted"] = float(self.stats[kind].p_adjusted[i])
        return entry


def _parts(sides, paired: PairedPrompts, split: PromptSplit, cfg) -> dict[str, _Part]:
    base_pm = sides["base"]["prompt_mean"][paired.base_rows].numpy()
    tuned_pm = sides["tuned"]["prompt_mean"][paired.tuned_rows].numpy()
    if split.kind == "none":  # every row, as the caches hold them
        return {"selection": _Part(sides, None, base_pm, tuned_pm, paired.kinds, None, cfg)}
    return {
        name: _Part(sides, group, base_pm, tuned_pm, paired.kinds, positions, cfg)
        for name, group, positions in (
            ("selection", SELECTION, split.selection),
            ("eval", EVAL, split.eval),
        )
    }


def _diff_of_means(base, tuned, hook, sides, split: PromptSplit, cfg) -> dict[str, Any]:
    keep = {
        name: None if split.kind == "none" else sides[name]["row_groups"] == SELECTION
        for name in ("base", "tuned")
    }
    direction = mean_activation(tuned, hook, cfg.batch_rows, keep["tuned"]) - mean_activation(
        base, hook, cfg.batch_rows, keep["base"]
    )
    entry: dict[str, Any] = {
        "norm": float(direction.norm()),
        "file": "diff_of_means.safetensors",
        # also inline, so a latents.json written by other code still carries the baseline
        "vector": [round(float(v), 7) for v in direction],
    }
    if split.kind != "none":
        entry["prompts"] = "selection_ids"
    return entry


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
    effect. The selection statistic, the ranking and the difference of means see the
    ``selection_ids`` only; each listed latent's statistics on the held-out ``eval_ids`` are
    under its ``eval`` key.
    """
    cfg = _configured(config, overrides)
    hook = resolve_hook(sae, [base, tuned], cfg.hook)
    paired = pair_prompts(base, tuned)
    split = split_prompts(paired.ids, paired.records, paired.kinds, cfg)
    sides = _encode(sae, base, tuned, hook, paired, split, cfg)
    parts = _parts(sides, paired, split, cfg)
    chosen, held = parts["selection"], parts.get("eval")

    order = np.argsort(-chosen.delta, kind="stable")
    increased = [int(i) for i in order[: cfg.top] if chosen.delta[i] > 0]
    decreased = [int(i) for i in order[::-1][: max(1, cfg.top // 2)] if chosen.delta[i] < 0]
    selection = select_latents(
        chosen.stats,
        alpha=cfg.alpha,
        n_select=cfg.select,
        n_runners_up=cfg.n_runners_up,
        benign_penalty=cfg.benign_penalty,
        held_out=None if held is None else held.stats,
        min_effect_size=cfg.min_effect_size,
        min_relative_delta=cfg.min_relative_delta,
    )
    selection["rule_parameters"].update(test=cfg.test, split=split.kind)

    def row(i: int) -> dict[str, Any]:
        entry = {"index": i, **chosen.row(i)}
        if held is not None:
            entry["eval"] = held.row(i)
        return entry

    listed = increased + [i for i in decreased if i not in increased]
    detailed = list(dict.fromkeys(selection["latents"] + selection["runners_up"] + listed))
    part_of = None if split.kind == "none" else split.part_of()
    details = latent_details(
        sae, base, tuned, hook, detailed, cfg, tokenizer, unembedding, part_of=part_of
    )
    freq = {side: sides[side]["freq"].numpy() for side in ("base", "tuned")}
    for key, entry in details.items():
        entry["density"] = {side: float(freq[side][int(key)]) for side in freq}
    split_info = dict(split.info)
    split_info["prompt_kinds"] = {
        name: {kind: len(rows) for kind, rows in part.subsets.items()}
        for name, part in parts.items()
    }
    split_info["n_significant_increased"] = {
        name: part.n_significant_increased(cfg) for name, part in parts.items()
    }
    result: dict[str, Any] = {
        "sae": sae_name,
        "hook_name": hook,
        "d_sae": int(sae.cfg.d_sae),
        "n_prompts": len(paired.ids),
        "n_tokens": int(sides["base"]["rows"]),
        "n_tokens_tuned": int(sides["tuned"]["rows"]),
        "prompt_kinds": {name: len(rows) for name, rows in prompt_subsets(paired.kinds).items()},
        "test": cfg.test,
        "alpha": cfg.alpha,
        "min_effect_size": cfg.min_effect_size,
        "min_relative_delta": cfg.min_relative_delta,
        "significance": significance_rule(cfg),
        "n_significant_increased": chosen.n_significant_increased(cfg),
        "split": split_info,
        "selection_ids": split.selection_ids,
        "eval_ids": split.eval_ids,
        "latents": [row(i) for i in listed],
        "selected": selection,
        "example_rule": EXAMPLE_RULE,
        "details": details,
        "density": density_histogram(freq),
        "diff_of_means": _diff_of_means(base, tuned, hook, sides, split, cfg),
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
