"""Llama 3.2 Vision (``MllamaForConditionalGeneration``): images enter through cross-attention.

TransformerLens's TransformerBridge does not cover Mllama, so this family has generation and
native hooks only. No position receives vision features: its image position (``part`` 0) is the
``<|image|>`` token (config ``image_token_index``), where the cross-attention mask starts.
"""

from __future__ import annotations

from typing import Any

from interp.models.families.base import FamilyAdapter, family
from interp.models.families.tiny_parts import TINY_VISION, TinyTokens, tiny_text

MLLAMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<|image|>' }}"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
IMAGE_SIZE = 32


@family("mllama", "MllamaForConditionalGeneration")
class Mllama(FamilyAdapter):
    processor_class = "MllamaProcessor"
    nested_images = True
    bridge = False
    chat_template = MLLAMA_TEMPLATE
    tiny_tokens = TinyTokens(
        "<|begin_of_text|> <|end_of_text|> <|start_header_id|> <|end_header_id|> <|eot_id|> "
        "<|finetune_right_pad_id|> <|python_tag|> <|image|>",
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        pad="<|finetune_right_pad_id|>",
    )
    image_processor_class = "MllamaImageProcessor"
    tiny_image_options = dict(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, max_image_tiles=1)

    def tiny_config(self, tokenizer: Any) -> Any:
        import transformers

        return transformers.MllamaConfig(
            text_config=tiny_text(tokenizer, cross_attention_layers=[1]),
            vision_config=dict(
                TINY_VISION,
                image_size=IMAGE_SIZE,
                patch_size=8,
                num_global_layers=1,
                intermediate_layers_indices=[0],
                vision_output_dim=64,
                max_num_tiles=1,
                supported_aspect_ratios=[[1, 1]],
            ),
            image_token_index=tokenizer.convert_tokens_to_ids("<|image|>"),
        )

    def block_module(self, layer: Any, part: str) -> Any:
        # A cross-attention layer adds tanh(gate) * output (the MLP's also row-masked).
        if part in ("attn_out", "mlp_out") and hasattr(layer, "cross_attn"):
            return None
        return super().block_module(layer, part)

    def tiny_randomise(self, model: Any) -> None:
        # transformers initialises the tanh gates to zero: cross-attention would add nothing.
        for layer in model.model.language_model.layers:
            for name in ("cross_attn_attn_gate", "cross_attn_mlp_gate"):
                if hasattr(layer, name):
                    getattr(layer, name).uniform_(0.5, 1.0)
