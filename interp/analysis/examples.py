"""A latent's top-activating examples, kept to those that say something about it.

Rule (:data:`EXAMPLE_RULE`, written into ``latents.json``):

* **Template positions are dropped.** A row's *position key* is its token id and the ids of the
  :data:`TEMPLATE_WINDOW` tokens left of it. A key is a template position of a latent in one
  cache when, in more than half of that cache's prompts (and at least two), the latent fires
  there at one value (within :data:`TEMPLATE_TOLERANCE`, relative above 1, of the median of its
  nonzero activations at that key): the chat template's ``user :`` before any content is the
  typical one. Those rows are left out of the examples, counted, and the positions listed.
* **Exact duplicate contexts are dropped**: a second example with the same context text,
  highlighted span and image as one already listed (another prompt id) is counted, not shown.
* **Base and tuned copies of one row are shown once** (same prompt id, position and token),
  with both activations; ``source`` is the cache where it fired more (``activation`` there).

Each cache contributes up to ``n`` examples; they are listed highest activation first.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from interp.analysis.sources import ActivationSource, prompt_key

SIDES = ("base", "tuned")
TEMPLATE_WINDOW = 2
TEMPLATE_TOLERANCE = 1e-6
MAX_TEMPLATE_POSITIONS = 5
EXAMPLE_RULE = (
    f"top examples: up to N per cache, highest activation first; rows at template positions "
    f"are dropped (a token with the {TEMPLATE_WINDOW} tokens left of it where the latent fires "
    f"at one value, within {TEMPLATE_TOLERANCE:g} relative above 1, in more than half the "
    "cache's prompts); exact duplicate contexts (same text, span and image) are dropped; the base "
    "and tuned copies of one row are one example with base_activation and tuned_activation"
)


class RowIndex:
    """One cache's token rows: a key per row shared with the other cache (prompt id and
    position) and the position key the template rule groups by."""

    def __init__(self, store: ActivationSource, codes: Mapping[str, int], stride: int) -> None:
        tokens = store.tokens
        self.prompt_index = tokens["prompt_index"].long().numpy()
        self.token_id = tokens["token_id"].long().numpy()
        position = tokens["position"].long().numpy()
        prompts = store.prompts
        code = np.array([codes[prompt_key(p, i)] for i, p in enumerate(prompts)], dtype=np.int64)
        self.key = code[self.prompt_index] * stride + position if len(code) else position
        self._order = np.argsort(self.key, kind="stable")
        self._sorted = self.key[self._order]
        self.n_prompts = len(np.unique(self.prompt_index))
        left = np.full((len(position), TEMPLATE_WINDOW), -1, dtype=np.int64)
        by_prompt = np.argsort(self.prompt_index, kind="stable")
        bounds = np.flatnonzero(np.diff(self.prompt_index[by_prompt])) + 1
        for rows in np.split(by_prompt, bounds) if len(by_prompt) else []:
            index = int(self.prompt_index[rows[0]])
            ids = np.asarray(
                (prompts[index] if index < len(prompts) else {}).get("token_ids") or []
            )
            if not len(ids):
                continue
            at = position[rows]
            known = (at < len(ids)) & (ids[np.minimum(at, len(ids) - 1)] == self.token_id[rows])
            for w in range(1, TEMPLATE_WINDOW + 1):
                before = np.where(at - w >= 0, ids[np.clip(at - w, 0, len(ids) - 1)], -2)
                left[rows, w - 1] = np.where(known, before, -1)
        columns = np.column_stack([self.token_id, left])
        self.group = np.unique(columns, axis=0, return_inverse=True)[1].reshape(-1)

    def find(self, key: int, token_id: int) -> int | None:
        """The row with this shared key and token, if this cache has it."""
        at = int(np.searchsorted(self._sorted, key))
        while at < len(self._sorted) and self._sorted[at] == key:
            row = int(self._order[at])
            if self.token_id[row] == token_id:
                return row
            at += 1
        return None

    def template_rows(self, values: np.ndarray) -> tuple[np.ndarray, list[tuple[int, float, int]]]:
        """Rows at the latent's template positions (a bool per row), and per such position a
        representative row, its activation and the number of prompts it holds it in."""
        mask = np.zeros(len(values), dtype=bool)
        fired = np.flatnonzero(values > 0)
        if not len(fired):
            return mask, []
        order = np.lexsort((values[fired], self.group[fired]))
        rows, group = fired[order], self.group[fired][order]
        vals = values[rows]
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        counts = np.diff(np.r_[starts, len(rows)])
        run = np.repeat(np.arange(len(starts)), counts)
        median = vals[starts + counts // 2][run]
        near = np.abs(vals - median) <= TEMPLATE_TOLERANCE * np.maximum(1.0, np.abs(median))
        stride = int(self.prompt_index.max()) + 1
        pairs = np.unique(run[near] * stride + self.prompt_index[rows[near]])  # (run, prompt)
        n_constant = np.bincount(pairs // stride, minlength=len(starts))
        template = (n_constant > self.n_prompts / 2) & (n_constant >= 2)
        drop = near & template[run]
        mask[rows[drop]] = True
        found = []
        for r in np.flatnonzero(template):
            first = int(rows[np.flatnonzero(drop & (run == r))[0]])
            found.append((first, float(values[first]), int(n_constant[r])))
        return mask, found


def _ranked(values: np.ndarray, rows: np.ndarray, number: int, first: int = 256):
    """``(value, number, row)`` of ``rows``, highest value first (ties: lower row first),
    sorting the rest only when more than the ``first`` best are asked for."""
    if len(rows) > first:
        top = np.argpartition(-values[rows], first - 1)[:first]
        head, rest = rows[top], np.delete(rows, top)
        cut = values[head].min()
        rest, spill = rest[values[rest] < cut], rest[values[rest] >= cut]  # ties at the cut
        head = np.concatenate([head, spill])
    else:
        head, rest = rows, rows[:0]
    for part in (head, rest):
        part = part[np.lexsort((part, -values[part]))]
        yield from ((float(values[row]), number, int(row)) for row in part)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 5)


def top_examples(
    values: Mapping[str, np.ndarray],
    rows: Mapping[str, RowIndex],
    contexts: Mapping[str, Callable[[int], dict[str, Any]]],
    n: int,
    part_of: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``{"top_examples", "dropped", "template_positions"}`` of one latent whose activation on
    every row of each cache is ``values[side]`` (the rule in the module docstring).

    ``part_of`` maps prompt ids to their split (``selection`` / ``eval``), added to each example.
    """
    dropped = {"duplicate_contexts": 0, "template_tokens": 0}
    positions, ranked = [], []
    for number, side in enumerate(SIDES):
        template, found = rows[side].template_rows(values[side])
        dropped["template_tokens"] += int(template.sum())
        for row, value, n_prompts in found:
            context = contexts[side](row)
            positions.append(
                {"source": side, "token": context["token"], "context": context["context"],
                 "activation": _rounded(value), "n_prompts": n_prompts}
            )  # fmt: skip
        ranked.append(_ranked(values[side], np.flatnonzero((values[side] > 0) & ~template), number))
    candidates = heapq.merge(*ranked, key=lambda c: (-c[0], c[1]))

    listed: dict[tuple[int, int], dict[str, Any]] = {}
    shown: set[tuple[Any, ...]] = set()
    duplicates: set[tuple[int, int]] = set()  # a row counts once, whichever copy was seen
    taken = dict.fromkeys(SIDES, 0)
    for value, number, row in candidates:
        side, other = SIDES[number], SIDES[1 - number]
        if min(taken.values()) >= n:
            break
        key = (int(rows[side].key[row]), int(rows[side].token_id[row]))
        if taken[side] >= n or key in listed or key in duplicates:
            continue  # a copy of a listed row shows its activation there already
        context = contexts[side](row)
        text = (context["context"], context["token_start"], context["token_end"], context["image"])
        if text in shown:
            duplicates.add(key)
            continue
        shown.add(text)
        match = rows[other].find(*key)
        both = {side: value, other: None if match is None else float(values[other][match])}
        if both[other] is not None and both[other] > value:
            side, value = other, both[other]
        example = {"source": side, **context, "activation": _rounded(value)}
        example["base_activation"] = _rounded(both["base"])
        example["tuned_activation"] = _rounded(both["tuned"])
        if part_of is not None:
            example["split"] = part_of.get(str(context["prompt_id"]))
        listed[key] = example
        taken[side] += 1
    dropped["duplicate_contexts"] = len(duplicates)
    examples = sorted(listed.values(), key=lambda e: -e["activation"])
    positions.sort(key=lambda p: -p["activation"])
    return {
        "top_examples": examples,
        "dropped": dropped,
        "template_positions": positions[:MAX_TEMPLATE_POSITIONS],
    }
