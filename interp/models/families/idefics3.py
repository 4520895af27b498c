"""Idefics3 and SmolVLM (``Idefics3ForConditionalGeneration``): SigLIP + Llama, pixel shuffle."""

from __future__ import annotations

from typing import Any

from interp.models.families.base import FamilyAdapter, family
from interp.models.families.tiny_parts import TINY_VISION, TinyTokens, tiny_text

IDEFICS3_TEMPLATE = (
    "<|im_start|>{% for message in messages %}"
    "{{ message['role'] | capitalize }}{% if message['content'][0]['type'] == 'image' %}{{ ':' }}"
    "{% else %}{{ ': ' }}{% endif %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<image>' }}{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
IMAGE_SIZE, PATCH, SCALE = 32, 8, 2


@family("idefics3", "Idefics3ForConditionalGeneration", model_types=("idefics3", "smolvlm"))
class Idefics3(FamilyAdapter):
    processor_class = "Idefics3Processor"
    language_model_path = ("model.text_model",)
    nested_images = True
    image_marker_tokens = ("<fake_token_around_image>", "<global-img>", r"<row_\d+_col_\d+>")
    chat_template = IDEFICS3_TEMPLATE
    tiny_tokens = TinyTokens(
        "<|endoftext|> <|im_start|> <end_of_utterance> <fake_token_around_image> <image> "
        "<global-img> <row_1_col_1> <row_1_col_2> <row_2_col_1> <row_2_col_2>",
        bos="<|im_start|>",
        eos="<end_of_utterance>",
        pad="<|endoftext|>",
    )
    image_processor_class = "Idefics3ImageProcessor"
    tiny_image_options = dict(
        do_image_splitting=False,
        size={"longest_edge": IMAGE_SIZE},
        max_image_size={"longest_edge": IMAGE_SIZE},
    )
    tiny_processor_options = dict(image_seq_len=(IMAGE_SIZE // PATCH) ** 2 // SCALE**2)

    def tiny_config(self, tokenizer: Any) -> Any:
        import transformers

        return transformers.Idefics3Config(
            text_config=tiny_text(tokenizer),
            vision_config=dict(image_size=IMAGE_SIZE, patch_size=PATCH, **TINY_VISION),
            scale_factor=SCALE,
            image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        )
