"""The persona signals every monitor reads: the projection onto a persona folder's vector at the
decision position, its selected SAE latents' activation, and the judge's exact comply share.

* :class:`PersonaSignal` (:func:`load_signal`): the unit persona direction at the folder's
  chosen hook (or another hook it holds), its norm (the held-out vigilant-minus-loose gap), and,
  when the folder holds a ``latents.json`` whose SAE can be found, the selected latents;
* :func:`projections`: decision-position residuals of chats, projected (and the latents' summed
  activation);
* :func:`judge_openings` / :func:`opening_share`: a judge that names its comply and refuse
  openings (``config()["comply"]``, ``["refuse"]``) gets the exact teacher-forced probability
  of complying given one of the two openings, per item, without sampling.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.errors import VSFAError
from interp.persona.extract import Chat, decision_residuals, read_persona

LATENTS_FILE = "latents.json"


@dataclass
class PersonaSignal:
    """What a monitor projects onto: one hook's persona direction, optionally SAE latents."""

    path: Path
    hook: str
    unit: torch.Tensor
    norm: float
    heldout: list[Chat]
    heldout_kinds: list[str]
    fit_probe_ids: list[str]
    sae: Any = None
    latents: tuple[int, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {
            "persona": str(self.path),
            "hook": self.hook,
            "persona_norm": self.norm,
            "latents": list(self.latents) or None,
            "latents_hook": self.hook if self.latents else None,
        }


def _find_sae(path: Path, name: str | None) -> Path | None:
    """The SAE a ``latents.json`` names, relative to the folder, the working directory or as
    given; ``None`` when it is nowhere."""
    if not name:
        return None
    for candidate in (Path(name), path / name, path.parent / name):
        if (candidate / "cfg.json").is_file():
            return candidate
    return None


def load_signal(
    persona: str | os.PathLike, *, hook: str | None = None, sae: str | None = None
) -> PersonaSignal:
    """Read a persona folder (:func:`interp.persona.extract.read_persona`) for monitoring.

    Latents come from ``latents.json`` in the folder (its selected set) with the SAE it names
    (or ``sae``) when that SAE reads the same hook; otherwise the signal has no latents.
    """
    from interp.artifacts import read_json

    directions = read_persona(persona)
    hook = hook or directions.chosen_hook
    vector = directions.vector("persona", hook).float()
    norm = float(vector.norm())
    if not norm > 0:
        raise VSFAError(f"{persona}: the persona vector at {hook} is zero")
    contexts = directions.heldout(directions.contexts())
    cold: dict[str, tuple[Chat, str]] = {}
    for c in contexts:  # each held-out probe request once, asked cold (no cue turn)
        cold.setdefault(c.probe_id, (Chat(c.probe, c.image), c.probe_kind))
    signal = PersonaSignal(
        path=Path(persona), hook=hook, unit=vector / norm, norm=norm,
        heldout=[chat for chat, _ in cold.values()], heldout_kinds=[k for _, k in cold.values()],
        fit_probe_ids=[str(i) for i in directions.meta["fit_probe_ids"]],
    )  # fmt: skip
    latents_path = Path(persona) / LATENTS_FILE
    if latents_path.is_file():
        data = read_json(latents_path)
        chosen = (data.get("selected") or {}).get("latents") or []
        sae_dir = Path(sae) if sae else _find_sae(Path(persona), data.get("sae"))
        if chosen and sae_dir is not None and data.get("hook_name") == hook:
            from interp.sae import load_sae
            from interp.sae.latents import check_latents

            signal.sae = load_sae(sae_dir)
            signal.latents = tuple(check_latents(signal.sae, chosen))
    return signal


@torch.no_grad()
def projections(
    vlm: Any, signal: PersonaSignal, chats: Sequence[Chat], *, batch_size: int = 32
) -> dict[str, torch.Tensor]:
    """Per chat: ``projection`` (decision-position residual . unit persona direction) and, with
    latents, ``latents`` (their summed SAE activation)."""
    x = decision_residuals(vlm, chats, [signal.hook], batch_size=batch_size, quiet=True)
    x = x[signal.hook]
    out = {"projection": x @ signal.unit}
    if signal.latents:
        from interp.sae.latents import latent_activation

        acts = latent_activation(signal.sae, x.to(signal.sae.W_dec.device), list(signal.latents))
        out["latents"] = acts.reshape(len(x), -1).sum(-1).float().cpu()
    return out


def _token_id(tokenizer: Any, word: str) -> int:
    """The id of the first token of ``word`` as a reply opens with it."""
    token = tokenizer.convert_tokens_to_ids(word)
    if token is not None and token != tokenizer.unk_token_id:
        return int(token)
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not ids:
        raise VSFAError(f"the tokenizer has no token for the judge's opening {word!r}")
    return int(ids[0])


def judge_openings(judge: Any) -> tuple[str, str] | None:
    """``(comply, refuse)`` opening words of a judge that names them in its ``config()``."""
    config = judge.config() if hasattr(judge, "config") else {}
    comply, refuse = config.get("comply"), config.get("refuse")
    if isinstance(comply, str) and isinstance(refuse, str):
        return comply, refuse
    return None


@torch.no_grad()
def opening_share(
    vlm: Any, items: Sequence[Any], openings: tuple[str, str], *, batch_size: int = 32
) -> list[float]:
    """Per item, ``p(comply) / (p(comply) + p(refuse))`` of the first reply token, teacher
    forced (one forward pass over each prompt)."""
    from interp.images import open_image

    comply = _token_id(vlm.tokenizer, openings[0])
    refuse = _token_id(vlm.tokenizer, openings[1])
    shares: list[float] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        images = [open_image(i.image_path) if i.image_path else None for i in chunk]
        inputs = vlm.prepare(images, [i.prompt for i in chunk])
        probs = torch.softmax(vlm.model(**inputs).logits[:, -1, :].float(), dim=-1)
        pair = probs[:, [comply, refuse]]
        shares += (pair[:, 0] / pair.sum(1).clamp_min(1e-12)).tolist()
    return shares
