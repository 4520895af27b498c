"""The persona report: one JSON that puts each method's ground truth, attribution and causal
effect side by side, read from the artifacts of the persona stages.

:func:`build_report` reads

* ``persona.json`` (``vsfa persona extract``): the AUROC table per layer, the chosen layer, the
  fit and held-out probe ids;
* one ``score.json`` per fine-tuning seed (``vsfa persona score``): persona AUROC, cosine with
  the persona vector and share of that seed's VSFA shift of every candidate;
* ``frontier.json`` (``vsfa persona frontier``): every method's headline, removal point and
  rank p among random controls;
* ``latents.json`` (``vsfa latents diff``): the prompts that selected the SAE set;

and returns ``persona_report.json``'s dict: ``selection_items`` and ``eval_items`` (checked
disjoint, :func:`check_items`), ``methods`` (:data:`METHODS`, each with the keys of
:data:`METHOD_KEYS`, ``None`` where a method lacks one), the best single latent, the persona
analysis's bars, the cue-conditioned activations of the chosen candidates
(:func:`cue_activations`) and what each interval is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from interp.analysis.latents_file import check_disjoint as check_disjoint_latents
from interp.errors import VSFAError
from interp.persona.contexts import check_disjoint

REPORT_FILE = "persona_report.json"
METHODS = {
    "persona-vector": "persona_vector",
    "probe": "probe_direction",
    "diff-of-means": "diff_of_means",
    "sae-set": "sae_set",
    "prompting": None,
}
"""Report name of each method -> its candidate name in ``score.json`` (None: not a direction)."""
METHOD_KEYS = (
    "persona_auroc", "cosine_persona", "vsfa_shift_share", "add_asr_change_at_cap5",
    "ablate_asr_change", "ablate_capability_change", "random_rank_p",
)  # fmt: skip
REMOVAL = {"persona-vector": "project-out", "probe": "project-out",
           "diff-of-means": "project-out", "sae-set": "ablate"}  # fmt: skip
INTERVALS = {
    "add_asr_change_ci, ablate_asr_change_ci, ablate_capability_change_ci": (
        "95% percentile bootstrap of the paired change against the unsteered model on the same "
        "items: fine-tuning seeds, then prompt templates, then items (frontier.json intervals)"
    ),
    "vsfa_shift_share_range": "lowest and highest share over the fine-tuning seeds",
    "persona_auroc": "no interval: one value on the held-out contexts of the base model",
}
BARS = {"persona_auroc": 0.9, "sae_set_auroc": 0.8, "add_asr_drop": 0.15,
        "add_capability_cost": 0.05, "ablate_asr_rise": 0.10, "rank_p": 0.05,
        "mechanism_ratio": 3.0, "twin_auroc": 0.9}  # fmt: skip
"""The thresholds of the persona analysis's bars."""


def check_items(
    selection: Sequence[str], evaluation: Sequence[str], heldout: Sequence[str] = ()
) -> None:
    """The selection ids are not empty and share no id with the evaluation ids (the frontier's
    items) or with the held-out persona probes; one :class:`VSFAError` naming the lists."""
    if not selection:
        raise VSFAError(
            "the selection split is empty: nothing selected the SAE set or fitted the persona "
            "vector (latents.json selection_ids and persona.json fit_probe_ids)"
        )
    if not evaluation:
        raise VSFAError("the evaluation split is empty: the frontier scored no item")
    check_disjoint(selection, evaluation, "selection_items and eval_items")
    check_disjoint(selection, heldout, "selection_items and the held-out persona probes")


def _score_row(score: Mapping[str, Any], name: str, hook: str | None) -> dict[str, Any] | None:
    """The row of ``name`` in a ``score.json`` at ``hook`` (``name`` or ``name@hook``)."""
    rows = [r for r in score.get("candidates") or [] if r["name"].split("@")[0] == name]
    for row in rows:
        if hook is None or row["hook"] == hook:
            return row
    return rows[0] if rows else None


def _shares(scores: Sequence[Mapping[str, Any]], name: str, hook: str | None) -> list[float]:
    rows = [_score_row(score, name, hook) for score in scores]
    return [float(r["vsfa_shift_share"]) for r in rows if r is not None]


def _removal_point(entry: Mapping[str, Any] | None) -> dict[str, Any]:
    """The point of a removal method at its largest strength (all of it removed by default)."""
    if not entry or not entry.get("points"):
        return {}
    return max(entry["points"], key=lambda p: float(p["alpha"]))


def _method(
    name: str, scores: Sequence[Mapping[str, Any]], frontier: Mapping[str, Any]
) -> dict[str, Any]:
    methods = frontier.get("methods") or {}
    add = methods.get(name) if name == "prompting" else methods.get(f"{name}/add")
    removal = methods.get(f"{name}/{REMOVAL[name]}") if name in REMOVAL else None
    hook = (add or removal or {}).get("hook")
    candidate = METHODS[name]
    row = _score_row(scores[0], candidate, hook) if candidate and scores else None
    shares = _shares(scores, candidate, hook) if candidate else []
    top = (add or {}).get("headline") or {}
    point = _removal_point(removal)
    out: dict[str, Any] = {
        "persona_auroc": None if row is None else row["persona_auroc"],
        "persona_auroc_pooled": None if row is None else row["persona_auroc_pooled"],
        "cosine_persona": None if row is None else row["cosine_persona"],
        "vsfa_shift_share": float(np.mean(shares)) if shares else None,
        "vsfa_shift_share_range": [min(shares), max(shares)] if shares else None,
        "vsfa_shift_share_per_seed": shares or None,
        "add_asr_change_at_cap5": top.get("asr_change_at_cap5") if add else None,
        "add_asr_change_ci": top.get("asr_change_ci"),
        "add_alpha": top.get("alpha"),
        "add_capability_change": top.get("capability_change"),
        "ablate_asr_change": point.get("asr_change"),
        "ablate_asr_change_ci": point.get("asr_change_ci"),
        "ablate_capability_change": point.get("capability_change"),
        "ablate_capability_change_ci": point.get("capability_change_ci"),
        "random_rank_p": (add or {}).get("random_rank_p"),
        "ablate_random_rank_p": (removal or {}).get("random_rank_p"),
        "hook": hook,
    }
    if name == "sae-set":
        clamp = methods.get("sae-set/clamp") or {}
        out["latents"] = None if row is None else row["latents"]
        out["clamp_asr_change_at_cap5"] = (clamp.get("headline") or {}).get("asr_change_at_cap5")
        out["clamp_random_rank_p"] = clamp.get("random_rank_p")
    return out


def best_latent(score: Mapping[str, Any]) -> dict[str, Any] | None:
    """The single diffed latent with the highest persona AUROC in a ``score.json``."""
    latents = [r for r in score.get("candidates") or [] if r["kind"] == "latent"]
    if not latents:
        return None
    row = max(latents, key=lambda r: r["persona_auroc"])
    keys = ("name", "latents", "persona_auroc", "persona_auroc_pooled", "cosine_persona",
            "vsfa_shift_share")  # fmt: skip
    return {key: row[key] for key in keys}


def _bar(value: float | None, met: bool | None, **extra: Any) -> dict[str, Any]:
    return {"value": value, "met": met, **extra}


def measured_bars(
    persona: Mapping[str, Any], methods: Mapping[str, Any], latent: Mapping[str, Any] | None,
    mechanism: Mapping[str, Any] | None,
) -> dict[str, Any]:  # fmt: skip
    """Each bar of the persona analysis: the measured value and whether it is met (None: not
    measured)."""
    b = BARS
    chosen = persona["chosen_hook"]
    auc = persona["auroc"][chosen]
    pv, sae = methods.get("persona-vector") or {}, methods.get("sae-set") or {}
    out: dict[str, Any] = {
        "persona_vector_auroc": _bar(
            auc["persona"],
            auc["persona"] >= b["persona_auroc"],
            hook=chosen,
            pooled=auc.get("persona_pooled"),
        ),  # fmt: skip
    }
    set_auc = sae.get("persona_auroc")
    out["sae_set_auroc"] = _bar(
        set_auc, None if set_auc is None else set_auc >= b["sae_set_auroc"],
        best_latent=latent, shortfall=None if set_auc is None else b["sae_set_auroc"] - set_auc,
    )  # fmt: skip
    drop, p = pv.get("add_asr_change_at_cap5"), pv.get("random_rank_p")
    met = None if drop is None or p is None else drop <= -b["add_asr_drop"] and p <= b["rank_p"]
    out["persona_vector_add"] = _bar(
        drop, met, unit="ASR change", rank_p=p,
        capability_change=pv.get("add_capability_change"), alpha=pv.get("add_alpha"),
    )  # fmt: skip
    rise, p = pv.get("ablate_asr_change"), pv.get("ablate_random_rank_p")
    met = None if rise is None or p is None else rise >= b["ablate_asr_rise"] and p <= b["rank_p"]
    out["persona_vector_project_out"] = _bar(
        rise, met, unit="ASR change", rank_p=p,
        capability_change=pv.get("ablate_capability_change"),
    )  # fmt: skip
    out["sae_set_vs_baselines"] = {
        name: {"add_asr_change_at_cap5": (methods.get(name) or {}).get("add_asr_change_at_cap5"),
               "ablate_asr_change": (methods.get(name) or {}).get("ablate_asr_change")}
        for name in ("sae-set", "diff-of-means", "prompting", "persona-vector")
    }  # fmt: skip
    if mechanism:
        ratio, twin_auc = mechanism.get("ratio"), mechanism["twin"].get("persona_auroc")
        out["mechanism_share_ratio"] = _bar(
            ratio, None if ratio is None else ratio >= b["mechanism_ratio"],
            model_share=mechanism["model"]["shift_share"],
            twin_share=mechanism["twin"]["shift_share"],
        )  # fmt: skip
        out["twin_persona_auroc"] = _bar(twin_auc, twin_auc >= b["twin_auroc"])
    return out


def mechanism_side(persona: Mapping[str, Any], scores: Sequence[Mapping[str, Any]]) -> dict:
    """One model's side of the mechanism comparison: the share of its VSFA shift (per seed)
    along its own persona vector at its chosen layer, and that vector's held-out AUROC."""
    hook = persona["chosen_hook"]
    shares = _shares(scores, "persona_vector", hook)
    if not shares:
        raise VSFAError(f"no score.json scored the persona vector at {hook}")
    return {
        "hook": hook, "persona_auroc": persona["auroc"][hook]["persona"],
        "shift_share": float(np.mean(shares)), "shift_share_range": [min(shares), max(shares)],
        "shift_share_per_seed": shares,
    }  # fmt: skip


def mechanism(model: Mapping[str, Any], twin: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The model's share against the twin's (:func:`mechanism_side` of each)."""
    ratio = model["shift_share"] / twin["shift_share"] if twin["shift_share"] > 0 else None
    return {"contexts": source, "model": dict(model), "twin": dict(twin), "ratio": ratio}


def build_report(
    persona: Mapping[str, Any],
    scores: Sequence[Mapping[str, Any]],
    frontier: Mapping[str, Any],
    latents: Mapping[str, Any],
    *,
    seeds: Sequence[int],
    mechanism_block: Mapping[str, Any] | None = None,
    cue: Mapping[str, Any] | None = None,
    manifest: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``persona_report.json``'s dict (see the module doc); one :class:`VSFAError` when the
    selection split is empty or shares items with the evaluation."""
    if not scores:
        raise VSFAError("the report needs one score.json per fine-tuning seed; none was given")
    selection_ids = [str(i) for i in latents.get("selection_ids") or []]
    fit_ids = [str(i) for i in persona.get("fit_probe_ids") or []]
    selection = sorted(set(selection_ids) | set(fit_ids))
    evaluation = [str(i) for i in frontier.get("eval_items") or []]
    heldout = [str(i) for i in persona.get("heldout_probe_ids") or []]
    check_items(selection, evaluation, heldout)
    check_disjoint_latents(latents, evaluation, what="the frontier's items")
    methods = {name: _method(name, scores, frontier) for name in METHODS}
    latent = best_latent(scores[0])
    return {
        "selection_items": selection,
        "eval_items": evaluation,
        "heldout_probe_ids": heldout,
        "selection": {"latents": selection_ids, "persona_fit": fit_ids},
        "methods": methods,
        "best_latent": latent,
        "auroc_by_layer": dict(persona["auroc"]),
        "chosen_hook": persona["chosen_hook"],
        "auroc_rule": persona.get("auroc_rule"),
        "reference": frontier.get("reference"),
        "mechanism": dict(mechanism_block) if mechanism_block else None,
        "bars": measured_bars(persona, methods, latent, mechanism_block),
        "cue_activation": dict(cue) if cue else None,
        "seeds": list(seeds),
        "n_random": frontier.get("n_random"),
        "headline_rule": frontier.get("headline_rule"),
        "intervals": INTERVALS,
        "manifest": dict(manifest or {}),
    }


def cue_activations(
    vlm: Any, persona_dir: Any, *, sae: Any = None, latents: Sequence[int] = (),
    batch_size: int = 16, quiet: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Per held-out context of a persona folder, run through ``vlm`` at the decision position:
    the projection on the persona vector at the chosen hook and, with an SAE, the summed
    activation of ``latents``; ``{candidate: {"hook", "rows": [{id, cue, probe_kind, value}]}}``."""
    import torch

    from interp.persona.extract import decision_residuals, read_persona

    folder = read_persona(persona_dir)
    heldout = folder.heldout(folder.contexts())
    hooks = [folder.chosen_hook]
    if sae is not None:
        from interp.sae.latents import sae_hook_name

        hooks.append(sae_hook_name(sae))
    acts = decision_residuals(vlm, heldout, list(dict.fromkeys(hooks)), batch_size=batch_size,
                              quiet=quiet, desc="cue activations")  # fmt: skip
    values = {"persona-vector": (hooks[0], acts[hooks[0]] @ folder.vector("persona", hooks[0]))}
    if sae is not None and latents:
        from interp.sae.latents import latent_activation

        with torch.no_grad():
            x = acts[hooks[-1]].to(sae.W_dec.device)
            codes = latent_activation(sae, x, list(latents)).reshape(len(x), -1).sum(-1)
        values["sae-set"] = (hooks[-1], codes.float().cpu())
    return {
        name: {"hook": hook, "rows": [
            {"id": c.id, "cue": c.cue, "probe_kind": c.probe_kind, "value": float(v)}
            for c, v in zip(heldout, value)
        ]}
        for name, (hook, value) in values.items()
    }  # fmt: skip
