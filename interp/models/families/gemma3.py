"""Gemma 3 (``Gemma3ForConditionalGeneration``): SigLIP vision tower + Gemma 3 language model."""

from __future__ import annotations

from typing import Any

from interp.models.families.base import FamilyAdapter, family
from interp.models.families.tiny_parts import TINY_VISION, TinyTokens, tiny_text

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
IMAGE_SIZE, PATCH, TOKENS_PER_IMAGE = 32, 8, 4


@family("gemma3", "Gemma3ForConditionalGeneration")
class Gemma3(FamilyAdapter):
    processor_class = "Gemma3Processor"
    nested_images = True
    image_marker_tokens = ("<start_of_image>", "<end_of_image>")
    block_modules = {
        "ln1": "input_layernorm",
        "attn_out": "post_attention_layernorm",
        "ln2": "pre_feedforward_layernorm",
        "mlp_out": "post_feedforward_layernorm",
    }
    chat_template = GEMMA3_TEMPLATE
    tiny_tokens = TinyTokens(
        "<pad> <eos> <bos> <start_of_turn> <end_of_turn> <start_of_image> <end_of_image> "
        "<image_soft_token>",
        bos="<bos>",
        eos="<end_of_turn>",
        pad="<pad>",
        extra={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    image_processor_class = "Gemma3ImageProcessor"
    tiny_image_options = dict(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    tiny_processor_options = dict(image_seq_length=TOKENS_PER_IMAGE)

    def tiny_config(self, tokenizer: Any) -> Any:
        import transformers

        ids = tokenizer.convert_tokens_to_ids
        return transformers.Gemma3Config(
            text_config=tiny_text(tokenizer, head_dim=16, sliding_window=64),
            vision_config=dict(image_size=IMAGE_SIZE, patch_size=PATCH, **TINY_VISION),
            mm_tokens_per_image=TOKENS_PER_IMAGE,
            boi_token_index=ids("<start_of_image>"),
            eoi_token_index=ids("<end_of_image>"),
            image_token_index=ids("<image_soft_token>"),
        )

    def tiny_randomise(self, model: Any) -> None:
        # transformers initialises the projection to zero: the tiny model would ignore images.
        projector = model.model.multi_modal_projector
        projector.mm_input_projection_weight.normal_(
            std=projector.mm_input_projection_weight.shape[0] ** -0.5
        )
