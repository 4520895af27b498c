"""Tiny, randomly initialised models of every supported family, built offline from configs.

Tests and benchmarks use these to run the real code paths (real ``transformers`` classes, real
processors, real chat templates) without downloading weights. Each builder returns a folder
written with ``save_pretrained`` that :func:`interp.models.load_vlm` loads like any checkpoint.
The tokenizer is byte-level (256 byte tokens, no merges) plus the family's special tokens, so any
text round-trips.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from interp.models.compat import has_torchvision, image_only_processor

TINY_TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
)
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


def byte_level_tokenizer(
    special_tokens: list[str],
    *,
    bos: str | None,
    eos: str,
    pad: str,
    chat_template: str,
    extra_special_tokens: dict[str, str] | None = None,
) -> PreTrainedTokenizerFast:
    """A tokenizer of the 256 byte symbols plus ``special_tokens`` (ids 256...)."""
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


def _token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    return tokenizer.convert_tokens_to_ids(token)


# Chat templates: compact versions of each family's published template (same markers, same
# placement of image tokens), written for the content-list message format.
LLAVA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{% for c in message['content'] %}{{ c['text'] }} {% endfor %}"
    "{% else %}{{ message['role'].upper() + ': ' }}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image>\n' }}"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% if message['role'] == 'assistant' %}{{ '</s>' }}{% else %}{{ ' ' }}{% endif %}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
QWEN_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{% set ns.system = message['content'][0]['text'] + '\n\n' %}{% else %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\n' }}"
    "{% if message['role'] == 'user' %}{{ ns.system }}{% set ns.system = '' %}{% endif %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{{ '<end_of_turn>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}"
    "{{ message['role'] | capitalize }}{% if message['content'][0]['type'] == 'image' %}{{ ':' }}"
    "{% else %}{{ ': ' }}{% endif %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<image>' }}{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
MLLAMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<|image|>' }}"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)


def _save(model: torch.nn.Module, processor: Any, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_llava(out: Path, seed: int = 0) -> Path:
    tokenizer = byte_level_tokenizer(
        ["<s>", "</s>", "<pad>", "<image>"],
        bos="<s>",
        eos="</s>",
        pad="<pad>",
        chat_template=LLAVA_TEMPLATE,
    )
    image_size, patch = 32, 8
    image_processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = transformers.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )
    config = transformers.LlavaConfig(
        vision_config=transformers.CLIPVisionConfig(
            image_size=image_size, patch_size=patch, projection_dim=32, **TINY_VISION
        ),
        text_config=transformers.LlamaConfig(
            vocab_size=len(tokenizer),
            bos_token_id=_token_id(tokenizer, "<s>"),
            eos_token_id=_token_id(tokenizer, "</s>"),
            pad_token_id=_token_id(tokenizer, "<pad>"),
            **TINY_TEXT,
        ),
        image_token_id=_token_id(tokenizer, "<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    config.architectures = ["LlavaForConditionalGeneration"]
    torch.manual_seed(seed)
    return _save(transformers.LlavaForConditionalGeneration(config), processor, out)


def _qwen_tokenizer() -> PreTrainedTokenizerFast:
    return byte_level_tokenizer(
        [
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "<|vision_start|>",
            "<|vision_end|>",
            "<|image_pad|>",
            "<|video_pad|>",
        ],
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        chat_template=QWEN_TEMPLATE,
    )


def _qwen_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    return dict(
        image_token_id=_token_id(tokenizer, "<|image_pad|>"),
        video_token_id=_token_id(tokenizer, "<|video_pad|>"),
        vision_start_token_id=_token_id(tokenizer, "<|vision_start|>"),
        vision_end_token_id=_token_id(tokenizer, "<|vision_end|>"),
    )


def _qwen_processor(
    processor_class: type, video_class: str, image_processor: Any, tokenizer: Any
) -> Any:
    parts = dict(image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN_TEMPLATE)
    if has_torchvision():
        video_processor = getattr(transformers, video_class)(**QWEN_IMAGE)
        return processor_class(video_processor=video_processor, **parts)
    return image_only_processor(processor_class, **parts)


QWEN_IMAGE = dict(
    patch_size=8, merge_size=2, temporal_patch_size=2, min_pixels=32 * 32, max_pixels=32 * 32
)


def _qwen_text_config(tokenizer: PreTrainedTokenizerFast, **extra: Any) -> dict[str, Any]:
    """The tiny text config both Qwen builders share; ``extra`` adds the generation's own keys."""
    rope = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e4}
    rope.update(extra.pop("rope_parameters", {}))
    return dict(
        TINY_TEXT,
        vocab_size=len(tokenizer),
        rope_parameters=rope,
        bos_token_id=None,
        eos_token_id=_token_id(tokenizer, "<|im_end|>"),
        pad_token_id=_token_id(tokenizer, "<|endoftext|>"),
        **extra,
    )


def _qwen_vision_config(**extra: Any) -> dict[str, Any]:
    """The tiny vision tower both Qwen builders share, projecting to the text width."""
    return dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=8,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=TINY_TEXT["hidden_size"],
        **extra,
    )


def build_tiny_qwen2_5_vl(out: Path, seed: int = 0) -> Path:
    tokenizer = _qwen_tokenizer()
    image_processor = transformers.Qwen2VLImageProcessor(**QWEN_IMAGE)
    processor = _qwen_processor(
        transformers.Qwen2_5_VLProcessor, "Qwen2VLVideoProcessor", image_processor, tokenizer
    )
    config = transformers.Qwen2_5_VLConfig(
        text_config=_qwen_text_config(tokenizer, rope_scaling=None),
        vision_config=_qwen_vision_config(window_size=16, fullatt_block_indexes=[1]),
        **_qwen_ids(tokenizer),
    )
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    torch.manual_seed(seed)
    return _save(transformers.Qwen2_5_VLForConditionalGeneration(config), processor, out)


def build_tiny_qwen3_vl(out: Path, seed: int = 0) -> Path:
    tokenizer = _qwen_tokenizer()
    image_processor = transformers.Qwen2VLImageProcessor(**QWEN_IMAGE)
    processor = _qwen_processor(
        transformers.Qwen3VLProcessor, "Qwen3VLVideoProcessor", image_processor, tokenizer
    )
    config = transformers.Qwen3VLConfig(
        text_config=_qwen_text_config(
            tokenizer, head_dim=16, rope_parameters={"mrope_interleaved": True}
        ),
        vision_config=_qwen_vision_config(num_position_embeddings=16, deepstack_visual_indexes=[0]),
        **_qwen_ids(tokenizer),
    )
    config.architectures = ["Qwen3VLForConditionalGeneration"]
    torch.manual_seed(seed)
    return _save(transformers.Qwen3VLForConditionalGeneration(config), processor, out)


def build_tiny_gemma3(out: Path, seed: int = 0) -> Path:
    tokenizer = byte_level_tokenizer(
        [
            "<pad>",
            "<eos>",
            "<bos>",
            "<start_of_turn>",
            "<end_of_turn>",
            "<start_of_image>",
            "<end_of_image>",
            "<image_soft_token>",
        ],
        bos="<bos>",
        eos="<end_of_turn>",
        pad="<pad>",
        chat_template=GEMMA3_TEMPLATE,
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    image_size, patch, tokens_per_image = 32, 8, 4
    image_processor = transformers.Gemma3ImageProcessor(
        size={"height": image_size, "width": image_size}
    )
    processor = transformers.Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=tokens_per_image,
        chat_template=GEMMA3_TEMPLATE,
    )
    config = transformers.Gemma3Config(
        text_config=dict(
            TINY_TEXT,
            vocab_size=len(tokenizer),
            head_dim=16,
            sliding_window=64,
            bos_token_id=_token_id(tokenizer, "<bos>"),
            eos_token_id=_token_id(tokenizer, "<end_of_turn>"),
            pad_token_id=_token_id(tokenizer, "<pad>"),
        ),
        vision_config=dict(image_size=image_size, patch_size=patch, **TINY_VISION),
        mm_tokens_per_image=tokens_per_image,
        boi_token_index=_token_id(tokenizer, "<start_of_image>"),
        eoi_token_index=_token_id(tokenizer, "<end_of_image>"),
        image_token_index=_token_id(tokenizer, "<image_soft_token>"),
    )
    config.architectures = ["Gemma3ForConditionalGeneration"]
    torch.manual_seed(seed)
    return _save(transformers.Gemma3ForConditionalGeneration(config), processor, out)


def build_tiny_idefics3(out: Path, seed: int = 0) -> Path:
    tokenizer = byte_level_tokenizer(
        [
            "<|endoftext|>",
            "<|im_start|>",
            "<end_of_utterance>",
            "<fake_token_around_image>",
            "<image>",
            "<global-img>",
            *[f"<row_{r}_col_{c}>" for r in range(1, 3) for c in range(1, 3)],
        ],
        bos="<|im_start|>",
        eos="<end_of_utterance>",
        pad="<|endoftext|>",
        chat_template=IDEFICS3_TEMPLATE,
    )
    image_size, patch, scale = 32, 8, 2
    image_processor = transformers.Idefics3ImageProcessor(
        do_image_splitting=False,
        size={"longest_edge": image_size},
        max_image_size={"longest_edge": image_size},
    )
    seq_len = (image_size // patch) ** 2 // scale**2
    processor = transformers.Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=seq_len,
        chat_template=IDEFICS3_TEMPLATE,
    )
    config = transformers.Idefics3Config(
        text_config=dict(
            TINY_TEXT,
            vocab_size=len(tokenizer),
            bos_token_id=_token_id(tokenizer, "<|im_start|>"),
            eos_token_id=_token_id(tokenizer, "<end_of_utterance>"),
            pad_token_id=_token_id(tokenizer, "<|endoftext|>"),
        ),
        vision_config=dict(image_size=image_size, patch_size=patch, **TINY_VISION),
        scale_factor=scale,
        image_token_id=_token_id(tokenizer, "<image>"),
    )
    config.architectures = ["Idefics3ForConditionalGeneration"]
    torch.manual_seed(seed)
    return _save(transformers.Idefics3ForConditionalGeneration(config), processor, out)


def build_tiny_mllama(out: Path, seed: int = 0) -> Path:
    tokenizer = byte_level_tokenizer(
        [
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|finetune_right_pad_id|>",
            "<|python_tag|>",
            "<|image|>",
        ],
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        pad="<|finetune_right_pad_id|>",
        chat_template=MLLAMA_TEMPLATE,
    )
    image_size = 32
    image_processor = transformers.MllamaImageProcessor(
        size={"height": image_size, "width": image_size}, max_image_tiles=1
    )
    processor = transformers.MllamaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=MLLAMA_TEMPLATE
    )
    text = dict(TINY_TEXT, vocab_size=len(tokenizer), cross_attention_layers=[1])
    text.pop("intermediate_size")
    config = transformers.MllamaConfig(
        text_config=dict(
            text,
            intermediate_size=128,
            bos_token_id=_token_id(tokenizer, "<|begin_of_text|>"),
            eos_token_id=_token_id(tokenizer, "<|eot_id|>"),
            pad_token_id=_token_id(tokenizer, "<|finetune_right_pad_id|>"),
        ),
        vision_config=dict(
            image_size=image_size,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_global_layers=1,
            attention_heads=2,
            intermediate_layers_indices=[0],
            vision_output_dim=64,
            max_num_tiles=1,
            supported_aspect_ratios=[[1, 1]],
        ),
        image_token_index=_token_id(tokenizer, "<|image|>"),
    )
    config.architectures = ["MllamaForConditionalGeneration"]
    torch.manual_seed(seed)
    return _save(transformers.MllamaForConditionalGeneration(config), processor, out)


TINY_BUILDERS: dict[str, Callable[[Path, int], Path]] = {
    "llava": build_tiny_llava,
    "qwen2_5_vl": build_tiny_qwen2_5_vl,
    "qwen3_vl": build_tiny_qwen3_vl,
    "gemma3": build_tiny_gemma3,
    "idefics3": build_tiny_idefics3,
    "mllama": build_tiny_mllama,
}


def build_tiny_vlm(family: str, out: str | os.PathLike, seed: int = 0) -> Path:
    """Write a tiny random model of ``family`` to ``out`` (a ``save_pretrained`` folder)."""
    try:
        builder = TINY_BUILDERS[family]
    except KeyError:
        raise ValueError(f"no tiny builder for {family!r}; have {sorted(TINY_BUILDERS)}") from None
    return builder(Path(out), seed)


def tiny_image(seed: int = 0, size: int = 32):
    """A small deterministic RGB test image."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), "RGB")
