"""What every family's tiny builder shares: the tiny sizes and a byte-level tokenizer.

The tokenizer is byte level (256 byte tokens, no merges) plus the family's special tokens, so any
text round-trips without a downloaded vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TINY_TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
)
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


@dataclass(frozen=True)
class TinyTokens:
    """The special tokens of a family's tiny tokenizer."""

    special: str
    """The special tokens, separated by spaces (ids 256... in this order)."""
    bos: str | None
    eos: str
    pad: str
    extra: dict[str, str] = field(default_factory=dict)
    """Named special tokens the processor looks up (``{"image_token": "<image_soft_token>"}``)."""


def byte_level_tokenizer(
    special_tokens: list[str],
    *,
    bos: str | None,
    eos: str,
    pad: str,
    chat_template: str,
    extra_special_tokens: dict[str, str] | None = None,
) -> Any:
    """A ``PreTrainedTokenizerFast``: the 256 byte symbols, then ``special_tokens`` (ids 256...)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_symbols = list(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(sorted(byte_symbols))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(dict.fromkeys(special_tokens)))
    kwargs: dict[str, Any] = dict(
        tokenizer_object=backend, eos_token=eos, pad_token=pad, chat_template=chat_template
    )
    if bos is not None:
        kwargs["bos_token"] = bos
    if extra_special_tokens:
        kwargs["extra_special_tokens"] = extra_special_tokens
    return PreTrainedTokenizerFast(**kwargs)


def special_ids(tokenizer: Any) -> dict[str, int | None]:
    """``bos_token_id``, ``eos_token_id`` and ``pad_token_id`` of ``tokenizer``, for a config."""
    return dict(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def tiny_text(tokenizer: Any, **extra: Any) -> dict[str, Any]:
    """The tiny text config over ``tokenizer``'s vocabulary and special ids, plus ``extra``."""
    return dict(TINY_TEXT, vocab_size=len(tokenizer), **special_ids(tokenizer), **extra)
