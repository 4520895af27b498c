"""Scoring candidate persona features against a persona folder: ground truth and attribution.

Candidates: the selected SAE latent set of a ``latents.json``, each of its top diffed latents,
its difference of means, the persona vector and the logistic probe direction (at the scored hook
and, when it differs, at the persona's chosen hook). For each :func:`score_candidates` reports

* **persona AUROC** at the decision position on the held-out contexts, run through the base
  model (latents: the SAE's activation, summed over a set; directions: the projection), within
  probe kind like :func:`interp.persona.extract.separation` (pooled beside it);
* **cosine** with the persona vector at the candidate's hook (latents: the decoder row, or the
  sum of the set's rows);
* **share of the fine-tuning shift**: ``shift = mean(tuned - base)`` decision-position residual
  over cold harmful requests (less those that selected the latents, when ``latents.json``
  records its ``selection_ids``), ``share = (shift . u)^2 / |shift|^2`` for the unit
  candidate ``u``, with permutation nulls (:func:`shift_share`; chance is ``1 / d_model``).

``score.json`` goes into the output folder; with ``latents_out`` a copy of ``latents.json``
gains a ``persona`` block.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp.artifacts import atomic_path, make_manifest, read_json, write_json_atomic
from interp.errors import VSFAError
from interp.persona.config import ScoreConfig
from interp.persona.contexts import PersonaContext
from interp.persona.extract import Chat, decision_residuals, read_persona, separation

SCORE_FILE = "score.json"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One thing scored: a direction at a hook, or SAE latents (``latents``) read at it."""

    name: str
    kind: str
    hook: str
    direction: torch.Tensor
    latents: tuple[int, ...] = ()


def _shift_chats(config: ScoreConfig, spec: str | None, contexts: list[PersonaContext]) -> tuple:
    """The cold harmful requests (``Chat`` list) and where they came from."""
    if spec:
        from interp.cache.prompts import load_prompts

        prompts = load_prompts(spec)
        if any(p.kind for p in prompts):
            prompts = [p for p in prompts if p.kind == "harmful"]
        if not prompts:
            raise VSFAError(f"--shift-prompts {spec}: no harmful requests to measure the shift on")
        return [Chat(p.prompt, p.image) for p in prompts], [p.id for p in prompts], spec
    cold: dict[str, Chat] = {}
    for c in contexts:
        if c.probe_kind == "harmful" and not any(turn.image for turn in c.turns):
            cold.setdefault(c.probe_id, Chat(c.probe, c.image))
    if not cold:
        raise VSFAError("the contexts hold no harmful probe; give --shift-prompts")
    return list(cold.values()), list(cold), "the contexts' harmful probes, asked cold"


def _without_selection(config: ScoreConfig, chats: list, ids: list) -> tuple:
    """The shift prompts less those that selected the latents (``selection_ids`` of
    latents.json): a set chosen for rising on them would claim their shift by construction.
    The third value is how many were dropped (None: latents.json does not say)."""
    if not config.latents:
        return chats, ids, 0
    selection = read_json(config.latents).get("selection_ids")
    if selection is None:
        return chats, ids, None
    chosen = {str(i) for i in selection}
    kept = [n for n, i in enumerate(ids) if str(i) not in chosen]
    if not kept:
        raise VSFAError(
            f"every shift prompt selected the latents of {config.latents}; give --shift-prompts "
            "held out from the selection (its eval_ids)"
        )
    return [chats[n] for n in kept], [ids[n] for n in kept], len(ids) - len(kept)


def _latent_candidates(config: ScoreConfig, sae: Any, hook: str) -> list[Candidate]:
    from interp.analysis.latents_file import load_diff_of_means
    from interp.sae.latents import check_latents, latent_direction

    data = read_json(config.latents)
    if data.get("hook_name") not in (None, hook):
        raise VSFAError(f"{config.latents} diffed {data['hook_name']}, the SAE reads {hook}")
    candidates = []
    chosen = (data.get("selected") or {}).get("latents") or []
    if chosen:
        indices = tuple(check_latents(sae, chosen))
        direction = latent_direction(sae, list(indices))
        candidates.append(Candidate("sae_set", "latent_set", hook, direction, indices))
    for entry in data.get("latents", [])[: config.top]:
        index = int(entry["index"])
        direction = latent_direction(sae, index)
        candidates.append(Candidate(f"latent_{index}", "latent", hook, direction, (index,)))
    dom = load_diff_of_means(config.latents).float()
    candidates.append(Candidate("diff_of_means", "direction", hook, dom))
    return candidates


def _direction_candidates(persona: Any, hooks: list[str]) -> list[Candidate]:
    candidates = []
    for hook in hooks:
        suffix = "" if hook == hooks[0] else f"@{hook}"
        for kind, name in (("persona", "persona_vector"), ("probe", "probe_direction")):
            vector = persona.vector(kind, hook).float()
            candidates.append(Candidate(name + suffix, "direction", hook, vector))
    return candidates


def _scores(candidate: Candidate, x: torch.Tensor, sae: Any) -> torch.Tensor:
    if not candidate.latents:
        return x @ candidate.direction
    from interp.sae.latents import latent_activation

    with torch.no_grad():
        acts = latent_activation(sae, x.to(sae.W_dec.device), list(candidate.latents))
    return acts.reshape(len(x), -1).sum(-1).float().cpu()


def shift_share(
    diffs: torch.Tensor, units: torch.Tensor, n_permutations: int, seed: int
) -> dict[str, np.ndarray]:
    """Per unit row ``u`` of ``units``: the share of ``shift = mean(diffs)`` along ``u``, the
    signed projection ``shift . u`` and three p-values, each ``(1 + #{null >= observed}) / (1 +
    n)`` with one seeded set of draws for every candidate:

    * ``share_p``: sign flips of the per-prompt differences, statistic the share (the share does
      not change when every difference flips together, so this null is weak when the
      differences agree);
    * ``projection_p``: the same sign flips, statistic ``(shift . u)^2`` (is the residual moved
      along ``u`` at all, beyond the prompts' noise?);
    * ``random_p``: random unit directions, statistic the share (is ``u`` more aligned with the
      shift than a random direction?).
    """
    d64, u64 = diffs.double(), units.double()
    shift = d64.mean(0)
    projection = u64 @ shift
    share = projection**2 / shift.dot(shift).clamp_min(1e-30)
    generator = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (n_permutations, len(d64)), generator=generator).double() * 2 - 1
    null_shift = signs @ d64 / len(d64)
    null_projection = (null_shift @ u64.T) ** 2
    null_share = null_projection / (null_shift**2).sum(1, keepdim=True).clamp_min(1e-30)
    randoms = torch.randn(n_permutations, len(shift), generator=generator, dtype=torch.float64)
    random_share = (randoms @ shift) ** 2 / (randoms**2).sum(1) / shift.dot(shift).clamp_min(1e-30)

    def p_value(null: torch.Tensor, observed: torch.Tensor) -> np.ndarray:
        exceed = (null >= observed * (1 - 1e-9)).sum(0).double()
        return ((1 + exceed) / (1 + n_permutations)).numpy()

    return {
        "share": share.numpy(),
        "projection": projection.numpy(),
        "share_p": p_value(null_share, share[None, :]),
        "projection_p": p_value(null_projection, (projection**2)[None, :]),
        "random_p": p_value(random_share[:, None], share[None, :]),
    }


def _row(
    candidate: Candidate, auc: dict[str, Any], share: dict[str, float], reference: torch.Tensor
) -> dict[str, Any]:
    """One candidate's line of ``score.json``."""
    cosine = torch.nn.functional.cosine_similarity(candidate.direction, reference, dim=0)
    return {
        "name": candidate.name,
        "kind": candidate.kind,
        "hook": candidate.hook,
        "latents": list(candidate.latents) or None,
        "persona_auroc": auc["persona"],
        "persona_auroc_pooled": auc["persona_pooled"],
        "persona_auroc_by_kind": auc["persona_by_kind"],
        "cosine_persona": float(cosine),
        "vsfa_shift_share": share["share"],
        "shift_share_p": share["share_p"],
        "shift_projection": share["projection"],
        "shift_projection_p": share["projection_p"],
        "shift_share_random_p": share["random_p"],
        "norm": float(candidate.direction.norm()),
    }


def score_candidates(config: ScoreConfig) -> dict[str, Any]:
    """Score every candidate (see the module doc); writes and returns ``score.json``."""
    from interp.models import load_vlm

    started = time.time()
    persona = read_persona(config.persona)
    sae = None
    if config.sae:
        from interp.sae import load_sae
        from interp.sae.latents import sae_hook_name

        sae = load_sae(config.sae)
        hook = config.hook or sae_hook_name(sae)
    else:
        hook = config.hook or persona.chosen_hook
    hooks = list(dict.fromkeys([hook, persona.chosen_hook]))
    for name in hooks:
        persona.vector("persona", name)  # a hook the persona folder lacks is an error here
    if config.base_contexts:
        from interp.persona.contexts import read_contexts

        contexts = read_contexts(config.base_contexts)
    else:
        contexts = persona.contexts()
    heldout = persona.heldout(contexts)
    spec = config.shift_prompts or (persona.meta.get("source") or {}).get("shift_prompts")
    shift_chats, shift_ids, shift_from = _shift_chats(config, spec, contexts)
    shift_chats, shift_ids, excluded = _without_selection(config, shift_chats, shift_ids)

    options = dict(device=config.device, dtype=config.model_dtype)
    read = dict(batch_size=config.batch_size, quiet=config.quiet)
    base = load_vlm(config.model, **options)
    if sae is not None and int(sae.cfg.d_in) != base.d_model:
        raise VSFAError(
            f"--sae {config.sae} reads d_in {sae.cfg.d_in}; the model has {base.d_model}"
        )
    ctx = decision_residuals(base, heldout, hooks, desc="held-out contexts", **read)
    cold_base = decision_residuals(base, shift_chats, hooks, desc="shift (base)", **read)
    del base
    tuned = load_vlm(config.model, adapter=config.adapter, **options)
    cold_tuned = decision_residuals(tuned, shift_chats, hooks, desc="shift (tuned)", **read)
    del tuned

    candidates = _latent_candidates(config, sae, hook) if config.latents else []
    candidates += _direction_candidates(persona, hooks)
    labels = torch.tensor([c.label for c in heldout])
    kinds = np.array([c.probe_kind for c in heldout])
    shares: dict[str, dict[str, float]] = {}
    for name in hooks:
        mine = [c for c in candidates if c.hook == name]
        units = torch.stack([c.direction / c.direction.norm().clamp_min(1e-12) for c in mine])
        diffs = cold_tuned[name] - cold_base[name]
        values = shift_share(diffs, units, config.n_permutations, config.seed)
        for i, candidate in enumerate(mine):
            shares[candidate.name] = {key: float(value[i]) for key, value in values.items()}
    rows = []
    for candidate in candidates:
        auc = separation(_scores(candidate, ctx[candidate.hook], sae), None, labels, kinds)
        reference = persona.vector("persona", candidate.hook)
        rows.append(_row(candidate, auc, shares[candidate.name], reference))
    shift_norms = {h: float((cold_tuned[h] - cold_base[h]).mean(0).norm()) for h in hooks}
    result = {
        "hook": hook,
        "hooks": hooks,
        "persona": str(config.persona),
        "chosen_hook": persona.chosen_hook,
        "heldout_probe_ids": persona.meta["heldout_probe_ids"],
        "n_heldout_contexts": len(heldout),
        "shift": {
            "prompts": shift_from,
            "excluded_selection_ids": excluded,
            "n_prompts": len(shift_ids),
            "prompt_ids": shift_ids,
            "norm": shift_norms,
            "chance_share": 1.0 / int(ctx[hook].shape[1]),
            "n_permutations": config.n_permutations,
        },  # fmt: skip
        "candidates": rows,
        "manifest": make_manifest(
            "persona.score",
            dataclasses.asdict(config),
            seed=config.seed,
            complete=True,
            seconds=round(time.time() - started, 3),
        ),  # fmt: skip
    }
    out = Path(config.out)
    write_json_atomic(out / SCORE_FILE, result)
    if config.latents_out:
        _merge_into_latents(config, result)
    return result


def _merge_into_latents(config: ScoreConfig, result: dict[str, Any]) -> None:
    """A copy of ``latents.json`` (and its difference of means) with a ``persona`` block."""
    data = read_json(config.latents)
    target = Path(config.latents_out)
    if target.suffix != ".json":
        target = target / "latents.json"
    keys = ("persona_auroc", "cosine_persona", "vsfa_shift_share", "shift_share_p", "hook")
    data["persona"] = {
        "score": str(Path(config.out) / SCORE_FILE),
        "hook": result["hook"],
        "heldout_probe_ids": result["heldout_probe_ids"],
        "candidates": {r["name"]: {k: r[k] for k in keys} for r in result["candidates"]},
    }
    source = Path(config.latents).parent / (data.get("diff_of_means") or {}).get("file", "")
    if source.is_file() and source.parent.resolve() != target.parent.resolve():
        with atomic_path(target.parent / source.name) as tmp:
            shutil.copyfile(source, tmp)
    write_json_atomic(target, data)
