"""Persona contexts: chats whose earlier turns (or system prompt) carry a persona cue, ending in
a probe request whose reply the persona decides.

A :class:`PersonaContext` is one chat under one cue (``vigilant`` or ``loose``); the same probe
request (``probe_id``) is asked under both cues, so a set is contrastive and paired. A context
set is a JSONL of :meth:`PersonaContext.to_dict` records (:func:`read_contexts`,
:func:`write_contexts`). Sets come from a file or from a registered source
(:data:`CONTEXT_SOURCES`: ``system-pair`` and ``jsonl-pair`` here, ``organism`` from its
plug-in), built by :func:`build_contexts`. :func:`split_by_probe` splits a set into a fit and a
held-out part by probe request, so one request never sits on both sides.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from interp.data.jsonl import parse_json_object, read_lines
from interp.errors import VSFAError
from interp.persona.config import ContextOptions
from interp.registry import Registry

Cue = Literal["vigilant", "loose"]
ProbeKind = Literal["harmful", "benign"]
CUES: tuple[str, ...] = ("vigilant", "loose")
PROBE_KINDS: tuple[str, ...] = ("harmful", "benign")
CONTEXTS_FILE = "contexts.jsonl"


class ChatTurn(NamedTuple):
    """An earlier turn of a chat; ``image``: this turn carries the context's image."""

    user: str
    assistant: str
    image: bool = False


@dataclass(frozen=True)
class PersonaContext:
    """One chat under one persona cue, ending in the probe request (see the module doc)."""

    id: str
    cue: Cue
    turns: tuple[ChatTurn, ...]
    probe: str
    probe_id: str
    probe_kind: ProbeKind
    image: str | None = None
    system: str | None = None

    def __post_init__(self) -> None:
        turns = tuple(ChatTurn(*turn) for turn in self.turns)
        object.__setattr__(self, "turns", turns)
        if self.cue not in CUES:
            raise VSFAError(f"context {self.id!r}: cue {self.cue!r} is not one of {CUES}")
        if self.probe_kind not in PROBE_KINDS:
            raise VSFAError(
                f"context {self.id!r}: probe_kind {self.probe_kind!r} is not one of {PROBE_KINDS}"
            )
        if not self.probe:
            raise VSFAError(f"context {self.id!r} has an empty probe")
        with_image = [n for n, turn in enumerate(turns) if turn.image]
        if len(with_image) > 1:
            raise VSFAError(f"context {self.id!r}: turns {with_image} all carry the image")
        if with_image and not self.image:
            raise VSFAError(f"context {self.id!r}: turn {with_image[0]} carries an image; no path")

    @property
    def label(self) -> int:
        """1 for the vigilant cue, 0 for the loose one."""
        return int(self.cue == "vigilant")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "cue": self.cue,
            "turns": [turn._asdict() for turn in self.turns],
            "probe": self.probe,
            "probe_id": self.probe_id,
            "probe_kind": self.probe_kind,
            "image": self.image,
            "system": self.system,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "context") -> PersonaContext:
        if not isinstance(data, dict):
            raise VSFAError(f"{where}: expected a JSON object, got {type(data).__name__}")
        missing = [
            key for key in ("id", "cue", "probe", "probe_id", "probe_kind") if key not in data
        ]
        if missing:
            raise VSFAError(f"{where}: missing {', '.join(missing)}")
        try:
            turns = tuple(_turn(turn) for turn in data.get("turns") or ())
        except (KeyError, TypeError):
            raise VSFAError(f"{where}: each turn is {{user, assistant, image}}") from None
        try:
            return cls(
                id=str(data["id"]), cue=data["cue"], turns=turns, probe=str(data["probe"]),
                probe_id=str(data["probe_id"]), probe_kind=data["probe_kind"],
                image=data.get("image") or None, system=data.get("system") or None,
            )  # fmt: skip
        except VSFAError as error:
            raise VSFAError(f"{where}: {error}") from None


def _turn(turn: Any) -> ChatTurn:
    if isinstance(turn, dict):
        return ChatTurn(str(turn["user"]), str(turn["assistant"]), bool(turn.get("image")))
    user, assistant, *image = turn
    return ChatTurn(str(user), str(assistant), bool(image and image[0]))


# ---- context-set files -------------------------------------------------------------------------
def _json_lines(path: Path) -> Iterable[tuple[str, Any]]:
    if not path.is_file():
        raise VSFAError(f"{path} does not exist (expected a JSONL of chats)")
    for number, line in enumerate(read_lines(path), 1):
        if line.strip():
            where = f"{path}:{number}"
            yield where, parse_json_object(line, where)


def _resolve_image(image: str | None, folder: Path) -> str | None:
    if image and not Path(image).is_absolute():
        return str(folder / image)
    return image


def read_contexts(path: str | os.PathLike) -> list[PersonaContext]:
    """A context set from JSONL (relative image paths are relative to the file's folder)."""
    path = Path(path)
    contexts = []
    for where, data in _json_lines(path):
        context = PersonaContext.from_dict(data, where)
        image = _resolve_image(context.image, path.parent)
        contexts.append(dataclasses.replace(context, image=image))
    check_contexts(contexts, str(path))
    return contexts


def write_contexts(path: str | os.PathLike, contexts: Sequence[PersonaContext]) -> Path:
    """Write a context set as JSONL, atomically; images inside the file's folder are written
    relative to it (so the folder can move)."""
    from interp.artifacts import write_text_atomic

    path = Path(path)
    folder = path.parent.resolve()
    lines = []
    for context in contexts:
        data = context.to_dict()
        if context.image:
            with contextlib.suppress(ValueError):  # outside the folder: kept as given
                data["image"] = str(Path(context.image).resolve().relative_to(folder))
        lines.append(json.dumps(data) + "\n")
    return write_text_atomic(path, "".join(lines))


def check_contexts(contexts: Sequence[PersonaContext], where: str) -> None:
    """Context ids are unique and every probe id keeps one request text and kind."""
    seen: set[str] = set()
    probes: dict[str, tuple[str, str]] = {}
    for context in contexts:
        if context.id in seen:
            raise VSFAError(f"{where}: context id {context.id!r} appears twice")
        seen.add(context.id)
        known = probes.setdefault(context.probe_id, (context.probe, context.probe_kind))
        if known != (context.probe, context.probe_kind):
            raise VSFAError(
                f"{where}: probe id {context.probe_id!r} names two requests ({known[0]!r} and "
                f"{context.probe!r}); one probe id is one request"
            )


def check_disjoint(first: Iterable[str], second: Iterable[str], what: str) -> None:
    """One clear error when two id lists that must be disjoint share ids."""
    shared = sorted(set(first) & set(second))
    if shared:
        listed = ", ".join(shared[:5]) + (" ..." if len(shared) > 5 else "")
        raise VSFAError(f"{what} overlap in {len(shared)} ids ({listed}); they must be disjoint")


# ---- the split by probe ------------------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    """A context set split by probe request into a fit part and a held-out part."""

    fit: list[PersonaContext]
    heldout: list[PersonaContext]
    fit_probe_ids: list[str] = field(default_factory=list)
    heldout_probe_ids: list[str] = field(default_factory=list)


def _cues(contexts: Sequence[PersonaContext]) -> set[str]:
    return {context.cue for context in contexts}


def split_by_probe(contexts: Sequence[PersonaContext], fraction: float, seed: int) -> Split:
    """Hold out ``fraction`` of the probe requests (of each probe kind, seeded) with all their
    contexts; the rest is the fit part. Errors: no contrast (one cue only), a split that would be
    empty or lack a cue, ids on both sides."""
    if not contexts:
        raise VSFAError("the context set is empty")
    cues = _cues(contexts)
    if len(cues) < 2:
        raise VSFAError(
            f"the contexts have no contrast: every one carries the {cues.pop()!r} cue; a persona "
            "direction needs vigilant and loose contexts over the same probes"
        )
    rng = random.Random(seed)
    held: set[str] = set()
    for kind in PROBE_KINDS:
        ids = sorted({c.probe_id for c in contexts if c.probe_kind == kind})
        rng.shuffle(ids)
        n_held = min(max(round(fraction * len(ids)), 1), len(ids) - 1) if len(ids) > 1 else 0
        held.update(ids[:n_held])
    fit = [c for c in contexts if c.probe_id not in held]
    heldout = [c for c in contexts if c.probe_id in held]
    for name, part in (("fit", fit), ("held-out", heldout)):
        missing = [cue for cue in CUES if cue not in _cues(part)]
        if missing:
            n_probes = len({c.probe_id for c in contexts})
            raise VSFAError(
                f"the {name} split has no {' or '.join(missing)} contexts ({n_probes} probe "
                f"requests, held-out fraction {fraction}); give more probes under both cues"
            )
    split = Split(
        fit, heldout,
        sorted({c.probe_id for c in fit}), sorted({c.probe_id for c in heldout}),
    )  # fmt: skip
    check_disjoint(split.fit_probe_ids, split.heldout_probe_ids, "fit and held-out probe ids")
    return split


# ---- sources -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContextSource:
    """A registered way to build a context set; ``build(config, out)`` may write images under
    ``out``. ``shift_prompts``: the cold requests that go with it (a prompt spec), if any."""

    build: Callable[[ContextOptions, Path], list[PersonaContext]]
    shift_prompts: str | None = None


CONTEXT_SOURCES: Registry[ContextSource] = Registry("persona context source")


def build_contexts(config: ContextOptions, out: Path) -> tuple[list[PersonaContext], str | None]:
    """The context set ``config.contexts`` names (a file or a source; images go under ``out``),
    capped at ``config.n_probes`` probe requests, and the source's shift prompts (or None)."""
    spec = config.contexts
    path = Path(spec)
    if path.suffix == ".jsonl" or path.is_file():
        contexts, shift = read_contexts(path), None
    else:
        source = CONTEXT_SOURCES.get(spec)
        contexts, shift = source.build(config, out), source.shift_prompts
        check_contexts(contexts, f"--contexts {spec}")
    if config.n_probes is not None:
        kept = list(dict.fromkeys(c.probe_id for c in contexts))[: config.n_probes]
        contexts = [c for c in contexts if c.probe_id in set(kept)]
    return contexts, shift


def _probe_kind(kind: str | None) -> str:
    return "harmful" if kind in (None, "harmful") else "benign"


def _system_pair(config: ContextOptions, out: Path) -> list[PersonaContext]:
    from interp.cache.prompts import load_prompts

    if not config.probes:
        raise VSFAError("--contexts system-pair needs --probes (the probe requests)")
    if config.vigilant_system == config.loose_system:
        raise VSFAError("--vigilant-system and --loose-system are the same text: no contrast")
    contexts = []
    for prompt in load_prompts(config.probes):
        for cue, system in (("vigilant", config.vigilant_system), ("loose", config.loose_system)):
            contexts.append(
                PersonaContext(
                    id=f"{prompt.id}-{cue}",
                    cue=cue,
                    turns=(),
                    probe=prompt.prompt,
                    probe_id=prompt.id,
                    probe_kind=_probe_kind(prompt.kind),
                    image=prompt.image,
                    system=system,
                )  # fmt: skip
            )
    return contexts


def _chat_record(data: Any, cue: str, where: str, number: int, folder: Path) -> PersonaContext:
    """One chat of a ``jsonl-pair`` file: ``{"turns": [...], "probe"}`` or OpenAI-style
    ``{"messages": [{"role", "content", "image"?}]}`` ending with the probe's user message."""
    if not isinstance(data, dict):
        raise VSFAError(f"{where}: expected a JSON object")
    if data.get("cue", cue) != cue:
        raise VSFAError(f"{where}: cue {data['cue']!r} in the {cue} chats")
    system = data.get("system")
    if "messages" in data:
        messages = list(data["messages"])
        if messages and messages[0].get("role") == "system":
            system = messages.pop(0).get("content")
        roles = [m.get("role") for m in messages]
        if (
            not roles
            or roles[-1] != "user"
            or roles[:-1] != ["user", "assistant"] * (len(roles) // 2)
        ):
            raise VSFAError(f"{where}: messages alternate user/assistant and end with the user's")
        turns = [
            {"user": u["content"], "assistant": a["content"], "image": u.get("image", False)}
            for u, a in zip(messages[:-1:2], messages[1:-1:2])
        ]
        probe = messages[-1].get("content")
    else:
        turns, probe = data.get("turns") or [], data.get("probe")
    if not probe:
        raise VSFAError(f"{where}: no probe request (a 'probe' field or a last user message)")
    record = {
        "id": f"{cue}-{data.get('id', number)}", "cue": cue, "turns": turns, "probe": probe,
        "probe_id": str(data.get("probe_id") or probe),
        "probe_kind": data.get("probe_kind", "harmful"), "system": system,
        "image": _resolve_image(data.get("image"), folder),
    }  # fmt: skip
    return PersonaContext.from_dict(record, where)


def _jsonl_pair(config: ContextOptions, out: Path) -> list[PersonaContext]:
    if not config.vigilant_chats or not config.loose_chats:
        raise VSFAError("--contexts jsonl-pair needs --vigilant-chats and --loose-chats")
    contexts = []
    for cue, name in (("vigilant", config.vigilant_chats), ("loose", config.loose_chats)):
        path = Path(name)
        for number, (where, data) in enumerate(_json_lines(path)):
            contexts.append(_chat_record(data, cue, where, number, path.parent))
    return contexts


CONTEXT_SOURCES.add("system-pair", ContextSource(_system_pair))
CONTEXT_SOURCES.add("jsonl-pair", ContextSource(_jsonl_pair))
