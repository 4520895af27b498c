"""The frontier's methods (:class:`FrontierMethod`), built from the inputs a user gives.

:func:`frontier_methods` reads

* a persona folder (``vsfa persona extract``): the persona vector ``persona/<hook>`` and the
  probe direction ``probe/<hook>`` at the chosen hook; the probe's weights have no natural
  length, so the probe is rescaled to the persona vector's norm (one alpha scale for both);
* a ``latents.json`` (``vsfa latents diff``) with its SAE: the selected set and the difference
  of means (tuned minus base mean, at the diff's hook);
* the prompting baseline: a system prompt, or one earlier in-context turn (given, or the first
  turn of the persona folder's first vigilant context).

Each direction is added to the base model (``add-direction`` at ``direction_alphas``) and
projected out of the tuned model (``project-out-direction`` at ``ablate_alphas``), with random
directions of its norm as controls (the same seeded orientations for every method). The set is
added and clamped (``add``/``clamp`` at ``sae_alphas``) and ablated (``ablate``), with random
latent sets matched in firing frequency and mean activation as controls. What selected a method
(latents.json's ``selection_ids``, persona.json's ``fit_probe_ids``) rides along, so the
frontier can refuse to score it on those items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from interp.errors import VSFAError
from interp.persona.config import FRONTIER_METHODS, FrontierConfig


@dataclass
class FrontierMethod:
    """One method of the frontier.

    ``mode`` is a registered steering mode (``add-direction``, ``project-out-direction``,
    ``add``, ``clamp``, ``ablate``) applied to ``target`` (a direction vector or latents) at
    ``hook``, at each of ``alphas``. ``mode=None`` is prompting: ``system`` (a system prompt)
    or ``turn`` (``{"user", "assistant", "image"?}``, one earlier turn before every item), one
    point. ``controls`` are random targets steered the same way; ``norm`` is the length the
    ``add`` controls are scaled to. ``selection`` names the items that selected the method."""

    name: str
    kind: Literal["add", "ablate"]
    mode: str | None = None
    target: Any = None
    hook: str | None = None
    alphas: Sequence[float] = (1.0,)
    controls: Sequence[Any] = ()
    control_kind: str | None = None
    norm: float | None = None
    sae: Any = None
    system: str | None = None
    turn: dict[str, str] | None = None
    selection: tuple[str, ...] = ()
    selection_source: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def candidate(self) -> str:
        """What is steered: ``persona-vector``, ``sae-set``, ``prompting`` ..."""
        return self.name.split("/")[0]


def _direction_methods(
    candidate: str, vector: torch.Tensor, hook: str, config: FrontierConfig, **common: Any
) -> dict[str, FrontierMethod]:
    """``candidate/add`` (added to the base) and ``candidate/project-out`` (removed from the
    tuned model), with random directions of the same norm as controls."""
    from interp.steer.directions import random_directions

    norm = float(vector.norm())
    controls = random_directions(config.n_random, vector.numel(), norm, config.seed)
    common.update(target=vector, hook=hook, controls=controls, norm=norm,
                  control_kind="random-directions")  # fmt: skip
    add, out = f"{candidate}/add", f"{candidate}/project-out"
    return {
        add: FrontierMethod(add, "add", "add-direction", alphas=config.direction_alphas, **common),
        out: FrontierMethod(
            out, "ablate", "project-out-direction", alphas=config.ablate_alphas, **common
        ),
    }


def _persona_methods(config: FrontierConfig, d_model: int) -> dict[str, FrontierMethod]:
    from interp.artifacts import read_json
    from interp.steer.directions import load_direction

    folder = Path(config.persona)
    info = read_json(folder / "persona.json")
    hook = config.hook or info.get("chosen_hook")
    hooks = info.get("hooks") or []
    if not hook or (hooks and hook not in hooks):
        raise VSFAError(f"--hook {hook!r}: {folder} holds persona directions at {hooks}")
    file = folder / "persona.safetensors"
    persona = load_direction(f"{file}:persona/{hook}", d_model)
    probe = load_direction(f"{file}:probe/{hook}", d_model)
    probe = probe * (persona.norm() / probe.norm().clamp(min=1e-12))
    selection = {"selection": tuple(info.get("fit_probe_ids") or ()),
                 "selection_source": f"{folder}/persona.json fit_probe_ids"}  # fmt: skip
    auroc = (info.get("auroc") or {}).get(hook)
    methods = _direction_methods(
        "persona-vector", persona, hook, config, **selection,
        info={"source": f"{file}:persona/{hook}", "auroc": auroc},
    )  # fmt: skip
    methods.update(_direction_methods(
        "probe", probe, hook, config, **selection,
        info={"source": f"{file}:probe/{hook}", "auroc": auroc, "scaled_to": "persona norm"},
    ))  # fmt: skip
    return methods


def _latents_selection(latents: dict[str, Any], path: str) -> dict[str, Any]:
    return {"selection": tuple(latents.get("selection_ids") or ()),
            "selection_source": f"{path} selection_ids"}  # fmt: skip


def _set_scale(latents: dict[str, Any], chosen: list[int]) -> float:
    """The set's largest tuned activation in the diff's histograms (1 without them)."""
    details = latents.get("details") or {}
    histograms = [(details.get(str(i)) or {}).get("histogram") or {} for i in chosen]
    values = [float(v) for histogram in histograms for v in histogram.get("tuned") or []]
    return max(values) if values else 1.0


def _sae_methods(config: FrontierConfig, sae: Any) -> dict[str, FrontierMethod]:
    from interp.analysis.latents_file import selected_latents
    from interp.artifacts import read_json
    from interp.sae.latents import check_latents, latent_direction, sae_hook_name
    from interp.steer.controls import latent_stats, latent_stats_for, match_random_latents

    latents = read_json(config.latents)
    chosen = check_latents(sae, selected_latents(config.latents))
    hook = sae_hook_name(sae)
    info: dict[str, Any] = {"latents": chosen}
    controls: list[list[int]] = []
    if config.n_random:
        if config.stats_acts:
            stats = latent_stats(sae, config.stats_acts, hook)
        else:
            stats = latent_stats_for(sae, config.latents, hook)
        matched = match_random_latents(stats, chosen, config.n_random, seed=config.seed,
                                       pool_factor=config.pool_factor, sae=sae)  # fmt: skip
        controls = matched.sets
        sets = [chosen, *controls]
        info["matched"] = {
            **matched.to_dict(), "source": stats.source,
            "freq": [[float(stats.freq[i]) for i in s] for s in sets],
            "mean": [[float(stats.mean[i]) for i in s] for s in sets],
        }  # fmt: skip
    scale = _set_scale(latents, chosen)
    alphas = config.sae_alphas or [0.25 * scale, 0.5 * scale, scale]
    common = {
        "target": chosen, "hook": hook, "controls": controls, "sae": sae, "info": info,
        "norm": float(latent_direction(sae, chosen).norm()), "control_kind": "matched-latents",
        **_latents_selection(latents, config.latents),
    }  # fmt: skip
    return {
        "sae-set/add": FrontierMethod("sae-set/add", "add", "add", alphas=alphas, **common),
        "sae-set/clamp": FrontierMethod("sae-set/clamp", "add", "clamp", alphas=alphas, **common),
        "sae-set/ablate": FrontierMethod(
            "sae-set/ablate", "ablate", "ablate", alphas=config.ablate_alphas, **common
        ),
    }


def _context_turn(persona: str | None) -> dict[str, str]:
    """The first earlier turn of the first vigilant context in a persona folder."""
    from interp.persona.contexts import CONTEXTS_FILE, read_contexts

    if not persona:
        raise VSFAError("--prompting in-context needs --prompt-turn or --persona (its contexts)")
    path = Path(persona) / CONTEXTS_FILE
    for context in read_contexts(path):
        if context.cue == "vigilant" and context.turns:
            first = context.turns[0]
            turn = {"user": first.user, "assistant": first.assistant}
            if first.image and context.image:
                turn["image"] = context.image
            return turn
    raise VSFAError(f"{path}: no vigilant context has an earlier turn; use --prompting system")


def _prompting(config: FrontierConfig) -> FrontierMethod:
    route = config.prompting
    if route == "auto":
        route = "in-context" if config.prompt_turn else "system"
    if route == "system":
        return FrontierMethod("prompting", "add", None, system=config.prompt_system,
                              info={"route": "system prompt"})  # fmt: skip
    turn = config.prompt_turn or _context_turn(config.persona)
    return FrontierMethod("prompting", "add", None, turn=turn,
                          info={"route": "in-context turn", "turn": turn})  # fmt: skip


NEEDS = {"persona-vector": "--persona", "probe": "--persona", "sae-set": "--latents and --sae",
         "diff-of-means": "--latents"}  # fmt: skip


def frontier_methods(
    config: FrontierConfig, *, d_model: int, sae: Any = None
) -> list[FrontierMethod]:
    """The methods of ``config.methods`` (default: every one its inputs allow), in the order
    of :data:`interp.persona.config.FRONTIER_METHODS`; a requested method whose input is
    missing is one error naming the option."""
    from interp.artifacts import read_json
    from interp.steer.directions import direction_hook, load_direction

    wanted = list(config.methods or FRONTIER_METHODS)
    methods: dict[str, FrontierMethod] = {}
    if config.persona and any(m.split("/")[0] in ("persona-vector", "probe") for m in wanted):
        methods.update(_persona_methods(config, d_model))
    if config.latents and sae is not None and any(m.startswith("sae-set/") for m in wanted):
        methods.update(_sae_methods(config, sae))
    if config.latents and any(m.startswith("diff-of-means/") for m in wanted):
        dom = load_direction(config.latents, d_model)
        selection = _latents_selection(read_json(config.latents), config.latents)
        methods.update(_direction_methods(
            "diff-of-means", dom, direction_hook(config.latents), config, **selection,
            info={"source": f"{config.latents} (tuned minus base mean)"},
        ))  # fmt: skip
    if "prompting" in wanted:
        methods["prompting"] = _prompting(config)
    missing = [m for m in wanted if m not in methods]
    if missing and config.methods:
        raise VSFAError(f"method {missing[0]} needs {NEEDS[missing[0].split('/')[0]]}")
    return [methods[m] for m in FRONTIER_METHODS if m in wanted and m in methods]
