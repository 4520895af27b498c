"""Qwen3-VL (``Qwen3VLForConditionalGeneration``): Qwen2.5-VL's parts with its own configs."""

from __future__ import annotations

from interp.models.families.base import family
from interp.models.families.qwen2_5_vl import Qwen2_5_VL


@family("qwen3_vl", "Qwen3VLForConditionalGeneration")
class Qwen3VL(Qwen2_5_VL):
    processor_class = "Qwen3VLProcessor"
    video_processor_class = "Qwen3VLVideoProcessor"
    config_class = "Qwen3VLConfig"
    tiny_text_options = dict(head_dim=16)
    tiny_rope_options = dict(mrope_interleaved=True)
    tiny_vision_options = dict(num_position_embeddings=16, deepstack_visual_indexes=[0])
