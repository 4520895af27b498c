"""Which prompts select the latents and which are held out to evaluate them.

A diff reads the base and tuned caches of the same prompts. :func:`split_prompts` divides those
shared prompts into a *selection* split (the only prompts the selection statistic and ranking
see) and an *eval* split (held out: its statistics are reported, never used to select), by
``DiffConfig.split``:

* ``none``: every prompt selects, nothing is held out (anything scored on them is circular);
* ``template``: :data:`TEMPLATE_SPLIT_RULE`, a seeded half of each kind's templates held out;
* ``ids``: the prompt ids of ``--selection-ids`` and/or ``--eval-ids`` files.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from interp.analysis.config import DiffConfig
from interp.errors import VSFAError

CIRCULAR_WARNING = (
    "selection saw every prompt of the caches (--split none): steering or evaluation scored on "
    "any of these prompts is circular; hold prompts out with --split template or "
    "--selection-ids FILE"
)
TEMPLATE_RULE = (
    "a prompt's template is its record's probe_id, else its template, else its id without the "
    "trailing item number (organism/harmful_image-0008 -> organism/harmful_image)"
)
TEMPLATE_SPLIT_RULE = (
    "templates are grouped by the kind of most of their prompts; within each kind (in sorted "
    "order) the sorted templates are permuted with numpy default_rng(seed) and the first "
    "floor(n / 2) are held out: their prompts are eval_ids, every other prompt selects"
)
_ITEM_NUMBER = re.compile(r"[-_#:.]?\d+$")


@dataclass
class PromptSplit:
    """Positions (into the shared prompt list) of the selection and eval prompts, and what to
    write about the split into ``latents.json``."""

    ids: list[str]
    selection: list[int]
    eval: list[int]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return str(self.info["kind"])

    @property
    def selection_ids(self) -> list[str]:
        return [self.ids[i] for i in self.selection]

    @property
    def eval_ids(self) -> list[str]:
        return [self.ids[i] for i in self.eval]

    def part_of(self) -> dict[str, str]:
        """``{prompt id: "selection" | "eval"}`` of every prompt in a split."""
        parts = {self.ids[i]: "eval" for i in self.eval}
        parts.update({self.ids[i]: "selection" for i in self.selection})
        return parts


def prompt_template(prompt: Mapping[str, Any]) -> str:
    """The template a cached prompt record was made from (:data:`TEMPLATE_RULE`)."""
    for key in ("probe_id", "template"):
        value = prompt.get(key)
        if value not in (None, ""):
            return str(value)
    prompt_id = str(prompt.get("id", prompt.get("index", "")))
    return _ITEM_NUMBER.sub("", prompt_id) or prompt_id


def read_ids(source: str | Sequence[str], option: str) -> list[str]:
    """Prompt ids from a file (one per line, ``#`` comments; a JSON list; or a JSONL of
    records with an ``id``), or from a list; repeats kept once."""
    if not isinstance(source, str | Path):
        return list(dict.fromkeys(str(item) for item in source))
    path = Path(source).expanduser()
    if not path.is_file():
        raise VSFAError(
            f"{option} {path}: no such file; expected prompt ids, one per line or a JSON list"
        )
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            ids = [json.loads(line)["id"] for line in text.splitlines() if line.strip()]
        elif path.suffix == ".json" or text.lstrip().startswith("["):
            ids = json.loads(text)
            if not isinstance(ids, list):
                raise TypeError
        else:
            ids = [line.strip() for line in text.splitlines()]
            ids = [line for line in ids if line and not line.startswith("#")]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise VSFAError(
            f"{option} {path}: expected prompt ids, one per line, a JSON list, or a JSONL of "
            "records with an 'id'"
        ) from None
    return list(dict.fromkeys(str(item) for item in ids))


def _some(ids: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(repr(i) for i in list(ids)[:n])
    return shown + (", ..." if len(ids) > n else "")


def _template_split(records: Sequence[Mapping[str, Any]], kinds: Sequence[str], seed: int):
    templates = [prompt_template(record) for record in records]
    kind_votes: dict[str, Counter] = {}
    for template, kind in zip(templates, kinds):
        kind_votes.setdefault(template, Counter())[kind] += 1
    by_kind: dict[str, list[str]] = {}
    for template in sorted(kind_votes):
        votes = kind_votes[template]
        kind = min(votes, key=lambda k: (-votes[k], k))
        by_kind.setdefault(kind, []).append(template)
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for kind in sorted(by_kind):
        names = by_kind[kind]
        held |= {names[i] for i in rng.permutation(len(names))[: len(names) // 2]}
    selection = [i for i, t in enumerate(templates) if t not in held]
    evaluation = [i for i, t in enumerate(templates) if t in held]
    if not evaluation:
        counts = "; ".join(f"{kind}: {_some(names)}" for kind, names in sorted(by_kind.items()))
        raise VSFAError(
            f"--split template: no template to hold out, every kind of prompt has a single one "
            f"({counts}); cache prompts of more templates, or give --selection-ids FILE"
        )
    info = {
        "rule": TEMPLATE_SPLIT_RULE,
        "template_rule": TEMPLATE_RULE,
        "seed": seed,
        "templates": {
            "selection": sorted(set(kind_votes) - held),
            "eval": sorted(held),
        },
    }
    return selection, evaluation, info


def _id_split(ids: Sequence[str], cfg: DiffConfig):
    position = {prompt_id: i for i, prompt_id in enumerate(ids)}
    given: dict[str, list[str]] = {}
    for option, source in (("--selection-ids", cfg.selection_ids), ("--eval-ids", cfg.eval_ids)):
        if source is None:
            continue
        listed = read_ids(source, option)
        where = f"{option} {source}" if isinstance(source, str | Path) else option
        if not listed:
            raise VSFAError(f"{where} holds no prompt ids")
        missing = [i for i in listed if i not in position]
        if missing:
            raise VSFAError(
                f"{where}: {len(missing)} of its {len(listed)} ids are not prompts of both "
                f"caches ({_some(missing)}); the caches hold {_some(list(ids))}"
            )
        given[option] = listed
    chosen, held = given.get("--selection-ids"), given.get("--eval-ids")
    if chosen is not None and held is not None:
        overlap = sorted(set(chosen) & set(held))
        if overlap:
            raise VSFAError(
                f"--selection-ids {cfg.selection_ids} and --eval-ids {cfg.eval_ids} share "
                f"{len(overlap)} prompt ids ({_some(overlap)}); a prompt that selects the "
                "latents cannot also evaluate them"
            )
    if chosen is None:
        rest = set(held or ())
        chosen = [i for i in ids if i not in rest]
    if held is None:
        rest = set(chosen)
        held = [i for i in ids if i not in rest]
    info = {
        "rule": "the prompt ids listed in the files; with one file, every other prompt of the "
        "caches is on the other side",
        "selection_ids_file": _name(cfg.selection_ids),
        "eval_ids_file": _name(cfg.eval_ids),
    }
    return [position[i] for i in chosen], [position[i] for i in held], info


def _name(source: Any) -> str | None:
    return None if source is None else str(source) if isinstance(source, str | Path) else "list"


def split_prompts(
    ids: Sequence[str], records: Sequence[Mapping[str, Any]], kinds: Sequence[str], cfg: DiffConfig
) -> PromptSplit:
    """Split the prompts both caches share (``ids``, their ``records`` and ``kinds``) by
    ``cfg.split``; a :class:`VSFAError` naming the option for an empty side."""
    ids = [str(i) for i in ids]
    if cfg.split == "none":
        selection, evaluation = list(range(len(ids))), []
        info: dict[str, Any] = {"warning": CIRCULAR_WARNING}
    elif cfg.split == "template":
        selection, evaluation, info = _template_split(records, kinds, cfg.split_seed)
    else:
        selection, evaluation, info = _id_split(ids, cfg)
    option = {"template": "--split template", "ids": "--selection-ids / --eval-ids"}
    where = option.get(cfg.split, "the caches")
    if len(selection) < 2:
        raise VSFAError(
            f"{where}: the selection split holds {len(selection)} prompt(s); the paired test "
            "needs at least 2"
        )
    if cfg.split != "none" and not evaluation:
        raise VSFAError(f"{where}: the eval split is empty; every shared prompt selects")
    unused = len(ids) - len(selection) - len(evaluation)
    info = {"kind": cfg.split, **info, "n_selection": len(selection), "n_eval": len(evaluation)}
    if unused:
        info["n_unused"] = unused
    return PromptSplit(ids, sorted(selection), sorted(evaluation), info)
