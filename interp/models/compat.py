"""Image-only processors for Qwen-VL families on machines without torchvision.

Qwen2.5-VL and Qwen3-VL processors insist on a video processor, and ``transformers`` only builds
video processors (and only exports their base class) when torchvision is installed. The workbench
never feeds videos, so without torchvision it assembles the family's processor from its tokenizer,
its image processor and a stand-in video processor that refuses videos with a clear message.
With torchvision installed none of this is used.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import transformers
from transformers.video_processing_utils import VideoProcessorMixin

from interp.errors import VSFAError


def has_torchvision() -> bool:
    return importlib.util.find_spec("torchvision") is not None


class NoVideoProcessor(VideoProcessorMixin):
    """Stands in for a video processor; any video input is refused."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise VSFAError("video inputs need torchvision, which is not installed; images work")

    def save_pretrained(self, *args: Any, **kwargs: Any) -> list:
        return []


def _expose_video_base_class() -> None:
    # ProcessorMixin checks sub-processors against classes looked up on the transformers module.
    if not hasattr(transformers, "VideoProcessorMixin"):
        transformers.VideoProcessorMixin = VideoProcessorMixin


def no_video_processor() -> NoVideoProcessor:
    """A :class:`NoVideoProcessor` that processors accept as their video processor."""
    _expose_video_base_class()
    return NoVideoProcessor()


def image_only_processor(processor_class: type, **parts: Any) -> Any:
    """A processor of ``processor_class`` whose video processor is :class:`NoVideoProcessor`."""
    return processor_class(video_processor=no_video_processor(), **parts)


def load_image_only_processor(processor_class: type, path: str, **kwargs: Any) -> Any:
    """Load tokenizer, image processor and chat template of a saved processor, without videos."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, **kwargs)
    image_processor = transformers.AutoImageProcessor.from_pretrained(path, **kwargs)
    processor_dict, _ = processor_class.get_processor_dict(path, **kwargs)
    chat_template = processor_dict.get("chat_template") or tokenizer.chat_template
    return image_only_processor(
        processor_class,
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=chat_template,
    )
