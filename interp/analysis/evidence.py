"""Evidence for a latent: top-activating tokens in context (each with its whole context's
activations and, on an image, its activation per image patch), examples from activation-quantile
bins, activation histograms, the nearest latents by decoder cosine, and the tokens its decoder
direction promotes and suppresses through the unembedding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import torch

from interp.analysis.config import DiffConfig
from interp.analysis.examples import SIDES, RowIndex, top_examples
from interp.analysis.sources import ActivationSource, encode_columns, prompt_key
from interp.analysis.views import PromptRows, decoder_neighbours, example_views, quantile_examples
from interp.sae.latents import latent_direction


@lru_cache(maxsize=1024)
def _image_size(path: str) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, SyntaxError):
        return None


def _with_views(examples, values, prompt_rows, contexts) -> None:
    """Add each example's context activations and image patches (in place)."""
    for example in examples:
        side = example["source"]
        image = example.get("image")
        size = _image_size(str(image)) if image else None
        example.update(
            example_views(example, values[side], prompt_rows[side], contexts[side].spaced, size)
        )


def _token_text(tokenizer: Any, token_id: int) -> str:
    if tokenizer is None:
        return f"<{token_id}>"
    return tokenizer.decode([int(token_id)], skip_special_tokens=False)


class _Contexts:
    """Turns a cached row into ``(token, context, token_start, token_end)``."""

    def __init__(self, store: ActivationSource, tokenizer: Any, width: int) -> None:
        self.tokens = store.tokens
        self.prompts = store.prompts
        self.tokenizer = tokenizer
        self.width = width
        self._piece: dict[int, str] = {}
        self._after: dict[tuple[int, int], str] = {}

    def piece(self, token_id: int, part: int | None = None) -> str:
        if part == 0:
            return "<image>"
        if token_id not in self._piece:
            self._piece[token_id] = _token_text(self.tokenizer, token_id)
        return self._piece[token_id]

    def spaced(self, token_id: int, previous: int | None) -> str:
        """The text ``token_id`` adds after ``previous`` (with the space a tokenizer puts
        between them); the token alone at the start or without a tokenizer."""
        if previous is None or self.tokenizer is None:
            return self.piece(token_id)
        key = (previous, token_id)
        if key not in self._after:
            first, pair = self._decode([previous]), self._decode([previous, token_id])
            self._after[key] = (
                pair[len(first) :] if pair.startswith(first) else self.piece(token_id)
            )
        return self._after[key]

    def __call__(self, row: int) -> dict[str, Any]:
        prompt_index = int(self.tokens["prompt_index"][row])
        position = int(self.tokens["position"][row])
        token_id = int(self.tokens["token_id"][row])
        part = int(self.tokens["part"][row]) if "part" in self.tokens else None
        prompt = self.prompts[prompt_index] if prompt_index < len(self.prompts) else {}
        ids = prompt.get("token_ids") or []
        token = self.piece(token_id, part)
        before, after = "", ""  # token ids not recorded: the token alone
        if position < len(ids) and int(ids[position]) == token_id:
            left = self._collapse(ids[max(0, position - self.width) : position])
            right = self._collapse(ids[position + 1 : position + 1 + max(1, self.width // 4)])
            if self.tokenizer is not None and part != 0:
                # decode the window as a whole, so word-level and SentencePiece tokenizers
                # keep their spaces; the token is what its id adds to the decoded prefix
                before = self._decode(left)
                upto = self._decode([*left, token_id])
                full = self._decode([*left, token_id, *right])
                if upto.startswith(before) and full.startswith(upto) and len(upto) > len(before):
                    token, after = upto[len(before) :], full[len(upto) :]
                else:
                    before, after = "", ""
            if not before and not after:
                before = "".join(self.piece(i) for i in left)
                after = "".join(self.piece(i) for i in right)
        return {
            "prompt_id": prompt.get("id", str(prompt_index)),
            "prompt": prompt.get("prompt", ""),
            "image": prompt.get("image"),
            "token": token,
            "context": before + token + after,
            "token_start": len(before),
            "token_end": len(before) + len(token),
            "position": position,
        }

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def _collapse(self, ids: Sequence[int]) -> list[int]:
        """Token ids, with runs of one repeated special token (image patches) kept once."""
        kept: list[int] = []
        previous = None
        for token_id in ids:
            token_id = int(token_id)
            if token_id == previous and self._is_special(token_id):
                continue
            kept.append(token_id)
            previous = token_id
        return kept

    def _is_special(self, token_id: int) -> bool:
        special = getattr(self.tokenizer, "all_special_ids", None) or []
        ids = getattr(self, "_special", None)
        if ids is None:
            ids = self._special = set(special) | self._image_ids()
        return token_id in ids

    def _image_ids(self) -> set[int]:
        parts = self.tokens.get("part")
        if parts is None:
            return set()
        return set(self.tokens["token_id"][parts == 0].unique().tolist())


def _histogram(values: torch.Tensor, keep: int, seed: int) -> list[float]:
    nonzero = values[values > 0]
    if len(nonzero) > keep:
        g = torch.Generator().manual_seed(seed)
        nonzero = nonzero[torch.randperm(len(nonzero), generator=g)[:keep]]
    return [round(float(v), 5) for v in nonzero.sort().values]


def logit_effect(
    direction: torch.Tensor, unembedding: torch.Tensor, tokenizer: Any, n: int = 10
) -> dict[str, list[list[Any]]]:
    """Tokens a residual direction promotes / suppresses through the unembedding (direct path)."""
    logits = unembedding.float().to(direction.device) @ direction.float()
    top = torch.topk(logits, min(n, len(logits)))
    bottom = torch.topk(-logits, min(n, len(logits)))
    return {
        "promoted": [
            [_token_text(tokenizer, i), round(v, 5)]
            for v, i in zip(top.values.tolist(), top.indices.tolist())
        ],
        "suppressed": [
            [_token_text(tokenizer, i), round(-v, 5)]
            for v, i in zip(bottom.values.tolist(), bottom.indices.tolist())
        ],
    }


def _row_indexes(stores: Mapping[str, ActivationSource]) -> dict[str, RowIndex]:
    """Row indexes of both caches, keyed alike (one code per prompt id of either cache)."""
    codes: dict[str, int] = {}
    for store in stores.values():
        for i, prompt in enumerate(store.prompts):
            codes.setdefault(prompt_key(prompt, i), len(codes))
    positions = [store.tokens["position"] for store in stores.values()]
    stride = max((int(p.max()) + 1 for p in positions if len(p)), default=1)
    return {side: RowIndex(store, codes, stride) for side, store in stores.items()}


def latent_details(
    sae: Any,
    base: ActivationSource,
    tuned: ActivationSource,
    hook: str,
    latents: list[int],
    cfg: DiffConfig,
    tokenizer: Any,
    unembedding: torch.Tensor | None,
    part_of: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Evidence per latent: top-activating tokens in context from both caches
    (:func:`interp.analysis.examples.top_examples`), examples per activation-quantile bin, each
    example's context activations and image patches (:mod:`interp.analysis.views`), activation
    histograms per side, the nearest latents by decoder cosine, and the logit effect of its
    decoder row (with an ``unembedding``). ``part_of`` tags each example with its prompt's
    split."""
    if not latents:
        return {}
    stores = {"base": base, "tuned": tuned}
    columns = {
        side: encode_columns(sae, store, hook, latents, cfg.batch_rows)
        for side, store in stores.items()
    }
    contexts = {
        side: _Contexts(store, tokenizer, cfg.context_tokens) for side, store in stores.items()
    }
    rows = _row_indexes(stores)
    prompt_rows = {side: PromptRows(store) for side, store in stores.items()}
    neighbours = decoder_neighbours(sae, latents)
    details: dict[str, Any] = {}
    for column, latent in enumerate(latents):
        values = {side: columns[side][:, column].double().numpy() for side in SIDES}
        entry: dict[str, Any] = top_examples(values, rows, contexts, cfg.examples, part_of)
        template = {side: rows[side].template_rows(values[side])[0] for side in SIDES}
        entry["quantiles"] = quantile_examples(values, template, contexts, seed=cfg.seed + latent)
        _with_views(entry["top_examples"], values, prompt_rows, contexts)
        for bin_ in entry["quantiles"]:
            _with_views(bin_["examples"], values, prompt_rows, contexts)
        entry["neighbours"] = neighbours.get(str(latent), [])
        entry["histogram"] = {
            source: _histogram(columns[source][:, column], cfg.histogram_values, cfg.seed)
            for source in SIDES
        }
        entry["logit_effect"] = None
        if unembedding is not None:
            direction = latent_direction(sae, latent)
            entry["logit_effect"] = logit_effect(
                direction, unembedding.detach(), tokenizer, cfg.n_logit_tokens
            )
        details[str(latent)] = entry
    return details
