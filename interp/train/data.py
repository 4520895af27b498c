"""Training examples: read them (VQA JSONL or VLGuard JSON), tokenise once, order, collate.

Each example is tokenised once, before training, into the family's model inputs plus ``labels``
that hold ``-100`` everywhere except on the response tokens: the conversation is tokenised with
and without the response through :meth:`VLM.prepare`, and the shared prefix (system, user turn,
image tokens, assistant opener) is masked. Image tensors of an image used by several questions
are shared, not copied. The order of micro-batches is a function of (seed, epoch) alone, so the
step number is all the data state a resumed run needs.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from interp.errors import VSFAError
from interp.images import open_image
from interp.train.config import TrainConfig

IGNORE_INDEX = -100

# Inputs whose second dimension is the token sequence (padded on the right when batching).
SEQUENCE_KEYS = (
    "input_ids",
    "attention_mask",
    "labels",
    "token_type_ids",
    "mm_token_type_ids",
    "cross_attention_mask",
)
PAD_VALUES = {"labels": IGNORE_INDEX}


@dataclass(frozen=True)
class Example:
    """One conversation to learn: an optional image, the user's text and the response."""

    id: str
    image: str | None
    prompt: str
    response: str


# ---- reading -------------------------------------------------------------------------------
def read_vqa_examples(path: str | os.PathLike) -> list[Example]:
    """VQA JSONL records (see :mod:`interp.data.vqa`) as examples; images resolved."""
    from interp.data.jsonl import read_vqa_jsonl, resolve_image

    path = Path(path)
    if path.suffix.lower() == ".json":
        raise VSFAError(
            f"--data {path} is a .json file; VSFA methods (lora, full) take the JSONL written "
            "by `vsfa data build` (VLGuard train.json goes with --method vlguard)"
        )
    return [
        Example(
            id=r["id"],
            image=str(resolve_image(r["image"], path.parent)),
            prompt=r["question"],
            response=r["answer"],
        )
        for r in read_vqa_jsonl(path)
    ]


def _field(entry: dict, name: str, where: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value.strip():
        raise VSFAError(f"{where}: field {name!r} is missing or empty")
    return value


def read_vlguard_examples(
    path: str | os.PathLike, image_root: str | os.PathLike | None = None
) -> list[Example]:
    """A VLGuard-format ``train.json`` (records read and checked by
    :func:`~interp.data.benchmarks.vlguard.read_vlguard_records`): unsafe images give one
    (instruction, response) pair, safe images a safe and an unsafe one."""
    from interp.data.benchmarks.vlguard import read_vlguard_records

    path = Path(path)
    if not path.is_file():
        raise VSFAError(f"VLGuard data {path} does not exist")
    if path.suffix.lower() == ".jsonl":
        raise VSFAError(
            f"--data {path} is a .jsonl file; --method vlguard takes a VLGuard-format "
            "train.json (the VQA JSONL of `vsfa data build` goes with lora and full)"
        )
    root = Path(image_root) if image_root is not None else path.parent
    examples: list[Example] = []
    for index, entry in enumerate(read_vlguard_records(path)):
        where = f"{path} entry {index}"
        image = _field(entry, "image", where)
        entry_id = str(entry.get("id", index))
        for number, pair in enumerate(entry["instr-resp"]):
            pair_where = f"{where} instr-resp[{number}]"
            if not isinstance(pair, dict):
                raise VSFAError(f"{pair_where}: expected a JSON object")
            keys = [
                k for k in ("instruction", "safe_instruction", "unsafe_instruction") if k in pair
            ]
            if not keys:
                raise VSFAError(
                    f"{pair_where}: needs one of instruction, safe_instruction, unsafe_instruction"
                )
            examples.append(
                Example(
                    id=f"{entry_id}-{number}",
                    image=str(root / image),
                    prompt=_field(pair, keys[0], pair_where),
                    response=_field(pair, "response", pair_where),
                )
            )
    if not examples:
        raise VSFAError(f"VLGuard data {path} has no entries")
    return examples


def subset(examples: Sequence[Example], limit: int | None, seed: int) -> list[Example]:
    """A seeded random subset of ``limit`` examples, in the original order."""
    if limit is None or limit >= len(examples):
        return list(examples)
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


def load_examples(config: TrainConfig) -> list[Example]:
    """The run's examples: its ``--data`` in the method's format, the ``--limit`` subset."""
    assert config.data is not None
    if config.method == "vlguard":
        examples = read_vlguard_examples(config.data, config.image_root)
    else:
        examples = read_vqa_examples(config.data)
    return subset(examples, config.limit, config.seed)


# ---- data order ----------------------------------------------------------------------------
def _micro_order(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


class MicroBatches:
    """Micro-batch index lists by global index; epochs reshuffle with (seed, epoch)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.per_epoch = math.ceil(n / batch_size)
        self._cache: dict[int, list[list[int]]] = {}

    def __getitem__(self, index: int) -> tuple[int, list[int]]:
        epoch, position = divmod(index, self.per_epoch)
        if epoch not in self._cache:
            self._cache = {epoch: _micro_order(self.n, self.batch_size, self.seed, epoch)}
        return epoch, self._cache[epoch][position]


# ---- tokenising ----------------------------------------------------------------------------
def common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    n = min(len(a), len(b))
    diff = (a[:n] != b[:n]).nonzero()
    return int(diff[0]) if len(diff) else n


def _answer_length(
    vlm: Any, prompt: str, response: str, image: bool, system: str | None
) -> tuple[int, list[int]]:
    """Tokens the response adds to the conversation, counted on the chat text alone.

    Image placeholders expand into many tokens only inside the user turn, so the response's
    tokens are the same with or without the expansion; counting them with the tokenizer (no
    image processing) saves a second processor call per example. Returns the count and the
    full conversation's token ids.
    """
    tokenizer = vlm.tokenizer
    short = vlm.chat_text(prompt, image=image, system=system)
    full = vlm.chat_text(prompt, image=image, system=system, response=response)
    a = tokenizer(short, add_special_tokens=False)["input_ids"]
    b = tokenizer(full, add_special_tokens=False)["input_ids"]
    return len(b) - common_prefix(torch.tensor(a), torch.tensor(b)), b


def encode_example(
    vlm: Any, image: Any, prompt: str, response: str, *, system: str | None = None
) -> dict[str, torch.Tensor]:
    """Model inputs of one conversation (batch dim 1, on the CPU) with answer-only ``labels``.

    The conversation is tokenised with and without the response; only what the response adds
    (the answer and the template's end-of-turn marker) is learned.
    """
    images = [image]
    try:
        full = vlm.prepare(
            images, [prompt], system=system, responses=[response], padding_side="right"
        )
        ids = full["input_ids"][0]
        n_answer, text_ids = _answer_length(vlm, prompt, response, image is not None, system)
        if not 0 < n_answer < len(ids) or ids[-n_answer:].tolist() != text_ids[-n_answer:]:
            # The processor tokenised the tail differently: compare the two full encodings.
            prompt_only = vlm.prepare(images, [prompt], system=system, padding_side="right")
            n_answer = len(ids) - common_prefix(prompt_only["input_ids"][0], ids)
    except ValueError as error:
        if "chat template" not in str(error).lower():
            raise
        raise VSFAError(
            f"{vlm.name_or_path} has no chat template; training needs an instruction-tuned "
            "(chat) model or a processor with chat_template set"
        ) from None
    if n_answer <= 0:
        raise VSFAError(f"response {response!r} adds no tokens to the conversation")
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[-n_answer:] = ids[-n_answer:]
    encoded = {key: value.cpu() for key, value in full.items()}
    encoded["labels"] = labels.unsqueeze(0).cpu()
    return encoded


def tokenize_examples(
    vlm: Any,
    examples: Sequence[Example],
    *,
    system: str | None = None,
    max_length: int | None = None,
    quiet: bool = False,
) -> tuple[list[dict[str, torch.Tensor]], int]:
    """Tokenise every example once; returns the encoded examples and how many were too long."""
    encoded: list[dict[str, torch.Tensor]] = []
    image_tensors: dict[str, dict[str, torch.Tensor]] = {}
    too_long = 0
    for example in tqdm(examples, desc="tokenising", disable=quiet, unit="ex"):
        image = open_image(example.image) if example.image else None
        item = encode_example(vlm, image, example.prompt, example.response, system=system)
        if max_length is not None and item["input_ids"].shape[1] > max_length:
            too_long += 1
            continue
        if example.image:
            shared = image_tensors.setdefault(
                example.image, {k: v for k, v in item.items() if k not in SEQUENCE_KEYS}
            )
            item.update(shared)
        encoded.append(item)
    if not encoded:
        raise VSFAError(f"every example is longer than --max-length {max_length}")
    return encoded, too_long


def collate(items: Sequence[dict[str, torch.Tensor]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad the sequence inputs, concatenate the image inputs (batch dim first)."""
    length = max(item["input_ids"].shape[1] for item in items)
    batch: dict[str, torch.Tensor] = {}
    keys = dict.fromkeys(key for item in items for key in item)
    for key in keys:
        values = [item[key] for item in items if key in item]
        if key in SEQUENCE_KEYS:
            pad = PAD_VALUES.get(key, pad_token_id if key == "input_ids" else 0)
            padded = []
            for value in values:
                extra = length - value.shape[1]
                if extra:
                    shape = (value.shape[0], extra, *value.shape[2:])
                    value = torch.cat([value, value.new_full(shape, pad)], dim=1)
                padded.append(value)
            values = padded
        batch[key] = torch.cat(values, dim=0)
    return batch


def answer_tokens(items: Sequence[dict[str, torch.Tensor]]) -> int:
    """Number of tokens the loss is taken on (labels shifted by one position)."""
    return sum(int((item["labels"][:, 1:] != IGNORE_INDEX).sum()) for item in items)
