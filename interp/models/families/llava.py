"""LLaVA-1.5 (``LlavaForConditionalGeneration``): CLIP vision tower + Llama language model."""

from __future__ import annotations

from typing import Any

from interp.models.families.base import FamilyAdapter, family
from interp.models.families.tiny_parts import TINY_VISION, TinyTokens, tiny_text

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
IMAGE_SIZE, PATCH = 32, 8


@family("llava", "LlavaForConditionalGeneration")
class Llava(FamilyAdapter):
    processor_class = "LlavaProcessor"
    chat_template = LLAVA_TEMPLATE
    tiny_tokens = TinyTokens("<s> </s> <pad> <image>", bos="<s>", eos="</s>", pad="<pad>")
    image_processor_class = "CLIPImageProcessor"
    tiny_image_options = dict(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    tiny_processor_options = dict(
        patch_size=PATCH, vision_feature_select_strategy="default", num_additional_image_tokens=1
    )

    def tiny_config(self, tokenizer: Any) -> Any:
        import transformers

        return transformers.LlavaConfig(
            vision_config=transformers.CLIPVisionConfig(
                image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=32, **TINY_VISION
            ),
            text_config=transformers.LlamaConfig(**tiny_text(tokenizer)),
            image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
            vision_feature_select_strategy="default",
            vision_feature_layer=-2,
        )
