"""Persona directions per layer: decision-position residuals of contrastive contexts, the mean
difference and a logistic probe fitted on one split, their AUROC on the other.

For every decoder layer ``L`` (hook ``blocks.L.hook_resid_post``) :func:`extract_persona` reads
the residual at the decision position (the last prompt token, which predicts the first reply
token) of every context, then on the **fit** split of probe requests:

* the **persona vector** = mean over vigilant contexts - mean over loose contexts;
* a **logistic probe** (vigilant = 1) on standardised features with an L2 penalty, stored as
  its weight in the residual space (``x @ w + b`` is the logit).

Both are scored by AUROC on the **held-out** probe requests (the projection on the persona
vector; the probe's logit), comparing vigilant with loose contexts of the same probe kind
(harmful with harmful, benign with benign: the kind of request moves the residual too, and that
is not the persona); the AUROC pooled over kinds and per kind are reported beside it. The chosen
layer has the highest held-out persona AUROC (ties: the
deeper layer). The folder written (atomically) holds ``persona.safetensors`` (``persona/<hook>``,
``probe/<hook>``), ``persona.json``, ``manifest.json`` and the ``contexts.jsonl`` it was fitted
on (with the images a source wrote).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from interp.artifacts import (
    MANIFEST,
    json_sha256,
    make_manifest,
    make_temporary_dir,
    output_is_current,
    read_json,
    write_json_atomic,
)
from interp.errors import VSFAError
from interp.models.vlm import VLM
from interp.persona.config import ExtractConfig
from interp.persona.contexts import (
    CONTEXTS_FILE,
    PersonaContext,
    build_contexts,
    check_disjoint,
    read_contexts,
    split_by_probe,
    write_contexts,
)

PERSONA_FILE = "persona.safetensors"
PERSONA_JSON = "persona.json"
AUROC_RULE = (
    "held-out probes only; persona/probe: vigilant vs loose contexts of the same probe kind "
    "(pooled over kinds' pairs); *_pooled: all pairs; chosen hook: highest persona AUROC, ties "
    "to the deeper layer"
)


# ---- decision-position residuals ---------------------------------------------------------------
@dataclass(frozen=True)
class Chat:
    """One input to read at the decision position: earlier turns, the request, image, system."""

    prompt: str
    image: str | None = None
    history: tuple = ()
    system: str | None = None

    @classmethod
    def of(cls, context: PersonaContext) -> Chat:
        return cls(context.probe, context.image, context.turns, context.system)


def decision_residuals(
    vlm: VLM,
    chats: Sequence[Chat | PersonaContext],
    hooks: Sequence[str],
    *,
    batch_size: int = 16,
    quiet: bool = False,
    desc: str = "decision",
) -> dict[str, torch.Tensor]:
    """``{hook: [len(chats), d_model]}`` float32 on the CPU: the residual at each chat's last
    prompt token, batched (chats with the same system prompt share a batch)."""
    from interp.hooks import run_with_cache
    from interp.images import open_image

    items = [chat if isinstance(chat, Chat) else Chat.of(chat) for chat in chats]
    order = sorted(range(len(items)), key=lambda i: items[i].system or "")
    batches: list[list[int]] = []
    for index in order:
        last = batches[-1] if batches else None
        if last and len(last) < batch_size and items[last[0]].system == items[index].system:
            last.append(index)
        else:
            batches.append([index])
    out = {hook: torch.zeros(len(items), vlm.d_model) for hook in hooks}
    for batch in tqdm(batches, desc=desc, unit="batch", disable=quiet):
        chosen = [items[i] for i in batch]
        inputs = vlm.prepare(
            [open_image(c.image) if c.image else None for c in chosen],
            [c.prompt for c in chosen],
            system=chosen[0].system,
            histories=[c.history for c in chosen],
        )
        mask = inputs.get("attention_mask", torch.ones_like(inputs["input_ids"]))
        seq = torch.arange(mask.shape[1], device=mask.device)
        last = torch.where(mask.bool(), seq, -1).max(dim=1).values  # -1 under left padding
        cache = run_with_cache(vlm, inputs, list(hooks))
        rows = torch.arange(len(batch), device=mask.device)
        for hook in hooks:
            out[hook][batch] = cache[hook][rows, last].float().cpu()
    return out


# ---- statistics --------------------------------------------------------------------------------
def _u_statistic(scores: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """Mann-Whitney U of the positives (ties counted half) and the number of pairs."""
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]
    return float(ranks[labels].sum() - n_pos * (n_pos + 1) / 2), n_pos * n_neg


def auroc(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    groups: Sequence[str] | np.ndarray | None = None,
) -> float:
    """Area under the ROC curve of ``scores`` for ``labels`` (1 positive), ties counted half.

    With ``groups`` only pairs of one group are compared (the AUROC pooled over the groups'
    positive/negative pairs), so an offset between groups (harmful vs benign requests) does not
    count as separation or its lack.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    keys = np.zeros(len(scores)) if groups is None else np.asarray(groups)
    u_total, pairs = 0.0, 0
    for key in np.unique(keys):
        rows = keys == key
        u, n = _u_statistic(scores[rows], labels[rows])
        u_total, pairs = u_total + u, pairs + n
    if not pairs:
        raise VSFAError("AUROC needs both classes (vigilant and loose contexts)")
    return u_total / pairs


def mean_difference(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of the rows labelled 1 minus the mean of the rows labelled 0."""
    positive = labels.bool()
    return (x[positive].mean(0) - x[~positive].mean(0)).float()


def fit_probe(x: torch.Tensor, labels: torch.Tensor, l2: float = 1.0) -> tuple[torch.Tensor, float]:
    """L2-regularised logistic regression on standardised ``x``; returns the weight and bias in
    the raw space (``x @ w + b`` is the logit). Loss: summed log loss + ``l2 / 2 * |w|^2``."""
    x64 = x.double()
    mean, std = x64.mean(0), x64.std(0, unbiased=False).clamp_min(1e-6)
    z, y = (x64 - mean) / std, labels.double()
    weight = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = z @ weight + bias
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum")
        loss = loss + 0.5 * l2 * weight.dot(weight)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    raw = (weight / std).detach()
    return raw.float(), float(bias.detach() - (mean / std).dot(weight.detach()))


# ---- the stage ---------------------------------------------------------------------------------
def _hooks(vlm: VLM, layers: Sequence[int] | None) -> list[str]:
    chosen = range(vlm.n_layers) if layers is None else layers
    return [vlm.hook_name(layer) for layer in chosen]  # a layer the model lacks is a VSFAError


def _labels(contexts: Sequence[PersonaContext]) -> torch.Tensor:
    return torch.tensor([c.label for c in contexts])


def separation(
    persona: torch.Tensor, probe: torch.Tensor | None, labels: torch.Tensor, kinds: np.ndarray
) -> dict[str, Any]:
    """AUROC of persona scores (and probe logits): within probe kind (the headline), pooled over
    kinds, and per kind."""
    y = labels.numpy()
    persona_np = persona.numpy()
    result: dict[str, Any] = {"persona": auroc(persona_np, y, kinds)}
    if probe is not None:
        result["probe"] = auroc(probe.numpy(), y, kinds)
    result["persona_pooled"] = auroc(persona_np, y)
    if probe is not None:
        result["probe_pooled"] = auroc(probe.numpy(), y)
    result["persona_by_kind"] = {
        str(kind): auroc(persona_np[kinds == kind], y[kinds == kind])
        for kind in np.unique(kinds)
        if len(set(y[kinds == kind])) == 2
    }
    return result


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished folder ``tmp`` onto ``out`` (replacing an earlier persona folder)."""
    if out.exists():
        if any(out.iterdir()) and not (out / PERSONA_JSON).exists():
            shutil.rmtree(tmp)
            raise VSFAError(f"{out} is not empty and holds no persona folder; choose another --out")
        old = make_temporary_dir(out)
        os.replace(out, old / "old")
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


def extract_persona(
    config: ExtractConfig, *, vlm: VLM | None = None, force: bool = False
) -> dict[str, Any]:
    """Persona vector and probe per layer (see the module doc); returns ``persona.json``."""
    started = time.time()
    out = Path(config.out)
    tmp = make_temporary_dir(out)
    try:
        contexts, shift_prompts = build_contexts(config, tmp)
        split = split_by_probe(contexts, config.heldout_fraction, config.seed)
        write_contexts(tmp / CONTEXTS_FILE, contexts)
        hashed = dataclasses.asdict(config)
        for key in ("out", "quiet", "device", "batch_size"):
            hashed.pop(key)
        inputs = {"contexts": json_sha256([c.to_dict() for c in contexts])}
        manifest = make_manifest("persona.extract", hashed, inputs=inputs, seed=config.seed)
        if not force and output_is_current(out, manifest):
            shutil.rmtree(tmp)
            return read_json(out / PERSONA_JSON)
        if vlm is None:
            from interp.models import load_vlm

            vlm = load_vlm(
                config.model, adapter=config.adapter, device=config.device,
                dtype=config.model_dtype,
            )  # fmt: skip
        hooks = _hooks(vlm, config.layers)
        acts = decision_residuals(
            vlm, contexts, hooks, batch_size=config.batch_size, quiet=config.quiet,
            desc="persona contexts",
        )  # fmt: skip
        meta = _directions(acts, contexts, split, config, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest.update(
        complete=True, seconds=round(time.time() - started, 3), model=config.model,
        adapter=config.adapter, n_contexts=len(contexts),
    )  # fmt: skip
    meta.update(
        model=config.model, adapter=config.adapter, positions="decision",
        contexts=CONTEXTS_FILE, source={"spec": config.contexts, "shift_prompts": shift_prompts},
        manifest=manifest,
    )  # fmt: skip
    write_json_atomic(tmp / PERSONA_JSON, meta)
    write_json_atomic(tmp / MANIFEST, manifest)
    _publish(tmp, out)
    return meta


def _directions(
    acts: dict[str, torch.Tensor], contexts: list[PersonaContext], split: Any,
    config: ExtractConfig, tmp: Path,
) -> dict[str, Any]:  # fmt: skip
    """Fit and score every hook's directions; writes ``persona.safetensors`` into ``tmp``."""
    from safetensors.torch import save_file

    held = set(split.heldout_probe_ids)
    fit_rows = torch.tensor([c.probe_id not in held for c in contexts])
    labels = _labels(contexts)
    kinds_held = np.array([c.probe_kind for c in contexts if c.probe_id in held])
    tensors: dict[str, torch.Tensor] = {}
    scores: dict[str, dict[str, float]] = {}
    biases: dict[str, float] = {}
    norms: dict[str, dict[str, float]] = {}
    for hook, x in acts.items():
        x_fit, y_fit = x[fit_rows], labels[fit_rows]
        x_held, y_held = x[~fit_rows], labels[~fit_rows]
        vector = mean_difference(x_fit, y_fit)
        weight, bias = fit_probe(x_fit, y_fit, config.probe_l2)
        tensors[f"persona/{hook}"], tensors[f"probe/{hook}"] = vector, weight
        scores[hook] = separation(x_held @ vector, x_held @ weight + bias, y_held, kinds_held)
        biases[hook] = bias
        norms[hook] = {"persona": float(vector.norm()), "residual": float(x.norm(dim=1).mean())}
    hooks = list(acts)
    chosen = max(reversed(hooks), key=lambda h: scores[h]["persona"])  # ties: the deeper layer
    projection = acts[chosen][~fit_rows] @ tensors[f"persona/{chosen}"]
    heldout = [c for c in contexts if c.probe_id in held]
    save_file(tensors, str(tmp / PERSONA_FILE), metadata={"chosen_hook": chosen})
    return {
        "hooks": hooks,
        "auroc": scores,
        "auroc_rule": AUROC_RULE,
        "chosen_hook": chosen,
        "fit_probe_ids": split.fit_probe_ids,
        "heldout_probe_ids": split.heldout_probe_ids,
        "n_contexts": len(contexts),
        "n_fit_contexts": int(fit_rows.sum()),
        "n_heldout_contexts": len(heldout),
        "probe_bias": biases,
        "norms": norms,
        "heldout_projection": [
            {"id": c.id, "cue": c.cue, "probe_kind": c.probe_kind, "value": float(v)}
            for c, v in zip(heldout, projection)
        ],
        "config": {"heldout_fraction": config.heldout_fraction, "probe_l2": config.probe_l2},
    }


# ---- reading a persona folder ------------------------------------------------------------------
@dataclass
class PersonaDirections:
    """A persona folder read back: ``persona.json`` and the tensors of every hook."""

    path: Path
    meta: dict[str, Any]
    persona: dict[str, torch.Tensor]
    probe: dict[str, torch.Tensor]

    @property
    def chosen_hook(self) -> str:
        return self.meta["chosen_hook"]

    def contexts(self) -> list[PersonaContext]:
        return read_contexts(self.path / self.meta.get("contexts", CONTEXTS_FILE))

    def heldout(self, contexts: Sequence[PersonaContext]) -> list[PersonaContext]:
        """The contexts of the held-out probe requests (an error when none are there)."""
        held = set(self.meta["heldout_probe_ids"])
        chosen = [c for c in contexts if c.probe_id in held]
        if not chosen:
            raise VSFAError(f"{self.path}: none of the contexts is of a held-out probe request")
        return chosen

    def vector(self, kind: str, hook: str) -> torch.Tensor:
        table = self.persona if kind == "persona" else self.probe
        if hook not in table:
            raise VSFAError(f"{self.path} has no {kind} direction at {hook} (it has {list(table)})")
        return table[hook]


def read_persona(path: str | os.PathLike) -> PersonaDirections:
    """A folder written by :func:`extract_persona` (its fit and held-out ids checked disjoint)."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_json(path / PERSONA_JSON)
    if not (path / PERSONA_FILE).exists():
        raise VSFAError(f"{path} has no {PERSONA_FILE}; is it a persona folder?")
    check_disjoint(meta["fit_probe_ids"], meta["heldout_probe_ids"], f"{path}: fit and held-out")
    tensors = load_file(str(path / PERSONA_FILE))
    persona = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("persona/")}
    probe = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("probe/")}
    return PersonaDirections(path, meta, persona, probe)
