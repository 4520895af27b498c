"""What a latent dashboard draws beside the top examples, computed where the caches are open.

* :func:`example_views`: for one example, the whole cached context with each token's
  activation (``tokens``: ``[text, activation]`` pairs; a run of image positions is one
  ``<image>`` piece holding their largest value) and, when the prompt has an image, the
  activation on each image position (``patches``, raster order, with its ``grid``
  ``[rows, cols]``): what the image-patch heatmap overlays on the image.
* :func:`quantile_examples`: examples drawn (seeded) from activation-quantile bins of the
  latent's nonzero activations over both caches, so a reader sees what a typical firing looks
  like, not only the top.
* :func:`density_histogram`: the log10 firing density of every latent of the SAE over all
  cached tokens, per cache (where a latent sits: dense, rare or dead).
* :func:`decoder_neighbours`: the latents whose decoder rows are nearest by cosine.

Image positions are the rows with ``part`` 0 (the positions vision features are written
into); they are assumed in raster order, laid out on the grid closest to the image's shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from interp.analysis.sources import ActivationSource

N_QUANTILE_BINS = 4
QUANTILE_EXAMPLES = 3
DENSITY_BINS = 30
N_NEIGHBOURS = 5
MAX_CONTEXT_TOKENS = 160


def _rounded(value: float) -> float:
    return round(float(value), 5)


class PromptRows:
    """One cache's rows grouped by prompt (each prompt's rows in position order)."""

    def __init__(self, store: ActivationSource) -> None:
        tokens = store.tokens
        self.prompt_index = tokens["prompt_index"].long().numpy()
        self.position = tokens["position"].long().numpy()
        self.token_id = tokens["token_id"].long().numpy()
        part = tokens.get("part")
        self.part = None if part is None else part.long().numpy()
        order = np.lexsort((self.position, self.prompt_index))
        bounds = np.flatnonzero(np.diff(self.prompt_index[order])) + 1
        groups = np.split(order, bounds) if len(order) else []
        self._rows = {int(self.prompt_index[g[0]]): g for g in groups}
        self.index_of = {
            str(p.get("id", str(i))): i for i, p in enumerate(store.prompts)
        }  # the id each example carries (interp.analysis.evidence)

    def rows(self, prompt_id: str) -> np.ndarray:
        """The prompt's rows in position order (none for an unknown id)."""
        index = self.index_of.get(str(prompt_id))
        return self._rows.get(index, np.zeros(0, dtype=np.int64))

    def is_image(self, rows: np.ndarray) -> np.ndarray:
        if self.part is None:
            return np.zeros(len(rows), dtype=bool)
        return self.part[rows] == 0


def patch_grid(n: int, image_size: tuple[int, int] | None = None) -> list[int]:
    """``[rows, cols]`` with ``rows * cols == n`` closest to the image's aspect (square when
    unknown); ``[1, n]`` when ``n`` has no such factorisation."""
    aspect = 1.0 if not image_size else image_size[0] / max(image_size[1], 1)  # width / height
    best, best_gap = [1, n], math.inf
    for rows in range(1, n + 1):
        if n % rows:
            continue
        cols = n // rows
        gap = abs(math.log(cols / rows) - math.log(aspect))
        if gap < best_gap - 1e-12:
            best, best_gap = [rows, cols], gap
    return best


def example_views(
    example: Mapping[str, Any],
    values: np.ndarray,
    rows: PromptRows,
    piece: Callable[[int, int | None], str],
    image_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """``tokens`` (the whole cached context, coloured by ``values``; ``[text, activation]``,
    the example's token at ``token_index``), and ``patches`` / ``grid`` (the activation on
    each image position) of one example of one cache. ``piece(token_id, previous_id)`` is the
    text a token adds after the previous one (its leading space included)."""
    mine = rows.rows(str(example.get("prompt_id")))
    if not len(mine):
        return {}
    image = rows.is_image(mine)
    tokens: list[list[Any]] = []
    previous: int | None = None
    previous_image = False
    at = 0
    for row, is_image in zip(mine, image):
        value = _rounded(values[row])
        if is_image:
            if previous_image:
                tokens[-1][1] = max(tokens[-1][1], value)
            else:
                tokens.append(["<image>", value])
            previous = int(rows.token_id[row])  # the next token's space follows the image
        else:
            token_id = int(rows.token_id[row])
            tokens.append([piece(token_id, previous), value])
            previous = token_id
        previous_image = bool(is_image)
        if int(rows.position[row]) == example.get("position"):
            at = len(tokens) - 1
    start = 0
    if len(tokens) > MAX_CONTEXT_TOKENS:  # the window around the example's token
        start = max(0, min(at - MAX_CONTEXT_TOKENS // 2, len(tokens) - MAX_CONTEXT_TOKENS))
        tokens = tokens[start : start + MAX_CONTEXT_TOKENS]
    views: dict[str, Any] = {"tokens": tokens, "token_index": at - start}
    patches = [_rounded(values[r]) for r in mine[image]]
    if patches:
        views["patches"] = patches
        views["grid"] = patch_grid(len(patches), image_size)
    return views


def quantile_examples(
    values: Mapping[str, np.ndarray],
    exclude: Mapping[str, np.ndarray],
    contexts: Mapping[str, Callable[[int], dict[str, Any]]],
    *,
    seed: int = 0,
    n_bins: int = N_QUANTILE_BINS,
    per_bin: int = QUANTILE_EXAMPLES,
) -> list[dict[str, Any]]:
    """Bins of equal share of the latent's nonzero activations over both caches (rows in
    ``exclude[side]``, the template positions, left out), each with up to ``per_bin`` examples
    drawn with ``seed``; a context already shown in a bin is not shown again."""
    pool = [
        (side, np.flatnonzero((v > 0) & ~exclude[side])) for side, v in values.items()
    ]  # fmt: skip
    acts = np.concatenate([values[side][r] for side, r in pool]) if pool else np.zeros(0)
    if not len(acts):
        return []
    sides = np.concatenate([np.full(len(r), i) for i, (_, r) in enumerate(pool)])
    where = np.concatenate([r for _, r in pool])
    edges = np.quantile(acts, np.linspace(0, 1, n_bins + 1))
    rng = np.random.default_rng(seed)
    bins = []
    for b in range(n_bins):
        low, high = float(edges[b]), float(edges[b + 1])
        inside = (acts >= low) & ((acts < high) if b < n_bins - 1 else (acts <= high))
        chosen = rng.permutation(np.flatnonzero(inside))
        examples, seen = [], set()
        for k in chosen:
            side = pool[int(sides[k])][0]
            context = contexts[side](int(where[k]))
            text = (context["context"], context["token_start"], context.get("image"))
            if text in seen:
                continue
            seen.add(text)
            examples.append({"source": side, **context, "activation": _rounded(acts[k])})
            if len(examples) >= per_bin:
                break
        examples.sort(key=lambda e: -e["activation"])
        bins.append(
            {"low": _rounded(low), "high": _rounded(high), "share": 1.0 / n_bins,
             "n_tokens": int(inside.sum()), "examples": examples}
        )  # fmt: skip
    return bins[::-1]  # highest bin first


def density_histogram(
    freq: Mapping[str, torch.Tensor | np.ndarray], bins: int = DENSITY_BINS
) -> dict[str, Any]:
    """Histogram of log10 firing density (fraction of cached tokens a latent fires on) of every
    latent, per cache, on shared bin edges; dead latents (never firing) are counted apart."""
    arrays = {side: np.asarray(f, dtype=np.float64) for side, f in freq.items()}
    alive = np.concatenate([a[a > 0] for a in arrays.values()])
    logs = np.log10(alive) if len(alive) else np.zeros(1)
    low, high = float(np.floor(logs.min() * 2) / 2), 0.0
    edges = np.linspace(low, high if high > low else low + 1, bins + 1)
    counts = {
        side: np.histogram(np.log10(a[a > 0]), bins=edges)[0].astype(int).tolist()
        for side, a in arrays.items()
    }
    return {
        "log10_edges": [round(float(e), 4) for e in edges],
        "counts": counts,
        "dead": {side: int((a == 0).sum()) for side, a in arrays.items()},
        "n_latents": int(len(next(iter(arrays.values())))) if arrays else 0,
    }


@torch.no_grad()
def decoder_neighbours(
    sae: Any, latents: Sequence[int], k: int = N_NEIGHBOURS
) -> dict[str, list[list[Any]]]:
    """Per latent, the ``k`` other latents with the highest decoder-row cosine, as
    ``[index, cosine]``."""
    if not latents:
        return {}
    decoder = torch.nn.functional.normalize(sae.W_dec.detach().float(), dim=1)
    chosen = torch.as_tensor(list(latents), dtype=torch.long)
    cosine = decoder[chosen] @ decoder.T
    cosine[torch.arange(len(chosen)), chosen] = -math.inf
    top = torch.topk(cosine, min(k, decoder.shape[0] - 1), dim=1)
    return {
        str(latent): [[int(i), round(float(c), 4)] for c, i in zip(vals, idx)]
        for latent, vals, idx in zip(latents, top.values.tolist(), top.indices.tolist())
    }
