"""Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``); Qwen3-VL builds on this module's parts.

Both Qwen-VL generations share the chat template, the tokenizer's special tokens, the image
processor, the processor's need for a video processor, and most of the tiny text and vision
configs; :class:`Qwen2_5_VL` keeps them and :class:`~interp.models.families.qwen3_vl.Qwen3VL`
overrides what its generation changes.
"""

from __future__ import annotations

from typing import Any

from interp.models.families.base import FamilyAdapter, family
from interp.models.families.tiny_parts import TINY_TEXT, TINY_VISION, TinyTokens, tiny_text

QWEN_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QWEN_IMAGE = dict(
    patch_size=8, merge_size=2, temporal_patch_size=2, min_pixels=32 * 32, max_pixels=32 * 32
)
QWEN_TOKENS = TinyTokens(
    "<|endoftext|> <|im_start|> <|im_end|> <|vision_start|> <|vision_end|> <|image_pad|> "
    "<|video_pad|>",
    bos=None,
    eos="<|im_end|>",
    pad="<|endoftext|>",
)


@family("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration")
class Qwen2_5_VL(FamilyAdapter):
    processor_class = "Qwen2_5_VLProcessor"
    image_marker_tokens = (r"<\|vision_start\|>", r"<\|vision_end\|>")
    chat_template = QWEN_TEMPLATE
    tiny_tokens = QWEN_TOKENS
    image_processor_class = "Qwen2VLImageProcessor"
    tiny_image_options = QWEN_IMAGE
    video_processor_class = "Qwen2VLVideoProcessor"
    config_class = "Qwen2_5_VLConfig"
    """The ``transformers`` config class of the tiny model."""
    tiny_text_options: dict[str, Any] = dict(rope_scaling=None)
    """This generation's own keys of the tiny text config."""
    tiny_rope_options: dict[str, Any] = {}
    """This generation's own keys of the tiny text config's ``rope_parameters``."""
    tiny_vision_options: dict[str, Any] = dict(window_size=16, fullatt_block_indexes=[1])
    """This generation's own keys of the tiny vision config."""

    def tiny_config(self, tokenizer: Any) -> Any:
        import transformers

        rope = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e4}
        vision = dict(
            TINY_VISION,
            patch_size=8,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=TINY_TEXT["hidden_size"],
        )
        ids = tokenizer.convert_tokens_to_ids
        return getattr(transformers, self.config_class)(
            text_config=tiny_text(
                tokenizer, rope_parameters=rope | self.tiny_rope_options, **self.tiny_text_options
            ),
            vision_config=vision | self.tiny_vision_options,
            image_token_id=ids("<|image_pad|>"),
            video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"),
            vision_end_token_id=ids("<|vision_end|>"),
        )
