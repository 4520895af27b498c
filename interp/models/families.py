"""Family adapters: what the rest of the workbench needs to know about one VLM architecture.

Every stage asks the adapter instead of special-casing a model: where the language model's
decoder layers are, how images are batched for the family's processor, which token ids mark image
positions, which modules LoRA targets by default, and whether TransformerLens's TransformerBridge
covers the architecture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from interp.errors import UnsupportedFamilyError


@dataclass(frozen=True)
class FamilyAdapter:
    """Static knowledge about one VLM family.

    Attributes:
        name: short family name used on the command line (``llava``, ``qwen2_5_vl`` ...).
        architectures: ``config.architectures`` entries that identify the family.
        model_types: ``config.model_type`` values that identify the family.
        model_class: name of the ``transformers`` class that loads it.
        language_model_path: attribute path from the loaded model to the decoder stack that owns
            ``.layers`` (tried in order; the first that exists wins).
        nested_images: the processor wants one list of images per text (Gemma 3, Idefics3, Mllama)
            rather than one flat list.
        bridge: TransformerLens's TransformerBridge supports this family; otherwise hooks use
            native PyTorch forward hooks under the same names.
        lora_targets: default LoRA target module names inside the language model.
        image_token_attrs: processor attributes holding token ids that mark image positions.
    """

    name: str
    architectures: tuple[str, ...]
    model_types: tuple[str, ...]
    model_class: str
    language_model_path: tuple[str, ...] = ("model.language_model",)
    nested_images: bool = False
    bridge: bool = True
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    image_token_attrs: tuple[str, ...] = ("image_token_id",)
    processor_class: str = ""
    needs_video_processor: bool = False
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def language_model(self, model: nn.Module) -> nn.Module:
        """The decoder stack (the module with ``.layers``) of a loaded model of this family."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        for path in self.language_model_path:
            module: Any = base
            try:
                for part in path.split("."):
                    module = getattr(module, part)
            except AttributeError:
                continue
            if hasattr(module, "layers"):
                return module
        raise UnsupportedFamilyError(
            f"model of family {self.name!r} has no decoder layers at any of "
            f"{list(self.language_model_path)}; is it really a {self.model_class}?"
        )

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return self.language_model(model).layers

    def text_config(self, config: Any) -> Any:
        return config.get_text_config() if hasattr(config, "get_text_config") else config

    def batch_images(self, images: list[Any]) -> list[Any] | None:
        """Arrange per-item images (``None`` for text-only items) the way the processor wants."""
        if all(image is None for image in images):
            return None
        if self.nested_images:
            return [[image] if image is not None else [] for image in images]
        return [image for image in images if image is not None]

    def image_token_ids(self, processor: Any) -> set[int]:
        ids = set()
        for attr in self.image_token_attrs:
            value = getattr(processor, attr, None)
            if isinstance(value, int):
                ids.add(value)
        return ids


FAMILIES: dict[str, FamilyAdapter] = {
    family.name: family
    for family in [
        FamilyAdapter(
            name="llava",
            architectures=("LlavaForConditionalGeneration",),
            model_types=("llava",),
            model_class="LlavaForConditionalGeneration",
        ),
        FamilyAdapter(
            name="qwen2_5_vl",
            architectures=("Qwen2_5_VLForConditionalGeneration",),
            model_types=("qwen2_5_vl",),
            model_class="Qwen2_5_VLForConditionalGeneration",
            processor_class="Qwen2_5_VLProcessor",
            needs_video_processor=True,
            image_token_attrs=("image_token_id", "vision_start_token_id", "vision_end_token_id"),
        ),
        FamilyAdapter(
            name="qwen3_vl",
            architectures=("Qwen3VLForConditionalGeneration",),
            model_types=("qwen3_vl",),
            model_class="Qwen3VLForConditionalGeneration",
            processor_class="Qwen3VLProcessor",
            needs_video_processor=True,
            image_token_attrs=("image_token_id", "vision_start_token_id", "vision_end_token_id"),
        ),
        FamilyAdapter(
            name="gemma3",
            architectures=("Gemma3ForConditionalGeneration",),
            model_types=("gemma3",),
            model_class="Gemma3ForConditionalGeneration",
            nested_images=True,
            image_token_attrs=("image_token_id", "boi_token_id", "eoi_token_id"),
        ),
        FamilyAdapter(
            name="idefics3",
            architectures=("Idefics3ForConditionalGeneration",),
            model_types=("idefics3", "smolvlm"),
            model_class="Idefics3ForConditionalGeneration",
            language_model_path=("model.text_model",),
            nested_images=True,
            image_token_attrs=("image_token_id", "fake_image_token_id"),
        ),
        FamilyAdapter(
            name="mllama",
            architectures=("MllamaForConditionalGeneration",),
            model_types=("mllama",),
            model_class="MllamaForConditionalGeneration",
            nested_images=True,
            bridge=False,
            notes="generation and native hooks only: TransformerBridge does not cover Mllama",
        ),
    ]
}


def supported_families() -> list[str]:
    return sorted(FAMILIES)


def get_family(name: str) -> FamilyAdapter:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnsupportedFamilyError(
            f"unknown VLM family {name!r}; supported families: {', '.join(supported_families())}"
        ) from None


def detect_family(config: Any) -> FamilyAdapter:
    """The family of a ``transformers`` config, from its architectures or model type."""
    architectures = tuple(getattr(config, "architectures", None) or ())
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES.values():
        if set(architectures) & set(family.architectures) or model_type in family.model_types:
            return family
    described = ", ".join(architectures) or f"model_type={model_type!r}"
    supported = "; ".join(f"{f.name} ({f.model_class})" for f in FAMILIES.values())
    raise UnsupportedFamilyError(
        f"unsupported VLM architecture {described}. Supported families: {supported}"
    )
