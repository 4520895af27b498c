"""The base family adapter and the family registry.

A family adapter is what the rest of the workbench knows about one VLM architecture. Every stage
asks the adapter instead of special-casing a model: where the language model's decoder layers
are, how images are batched for the family's processor, which token ids mark image positions,
which modules LoRA targets by default, and whether TransformerLens's TransformerBridge covers
the architecture. It also builds a tiny randomly initialised model of the architecture, offline,
for tests and benchmarks.

A family is a subclass of :class:`FamilyAdapter` in ``interp/models/families/<name>.py`` that
sets the class attributes and overrides the methods where a flag does not fit;
``@family(name, model_class)`` names it and registers one instance of it in :data:`FAMILIES`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.errors import UnsupportedFamilyError
from interp.models.families.tiny_parts import TinyTokens, byte_level_tokenizer
from interp.registry import Registry, load_plugins

if TYPE_CHECKING:
    from torch import nn


class FamilyAdapter:
    """Static knowledge about one VLM family (one instance per family, in :data:`FAMILIES`)."""

    name: str
    """Short family name used on the command line (``llava``, ``qwen2_5_vl`` ...)."""
    architectures: tuple[str, ...]
    """``config.architectures`` entries that identify the family."""
    model_types: tuple[str, ...]
    """``config.model_type`` values that identify the family."""
    model_class: str
    """Name of the ``transformers`` class that loads it."""
    language_model_path: tuple[str, ...] = ("model.language_model",)
    """Attribute paths from the loaded model to the decoder stack that owns ``.layers`` (tried in
    order; the first that exists wins)."""
    nested_images: bool = False
    """The processor wants one list of images per text (Gemma 3, Idefics3, Mllama) rather than
    one flat list."""
    bridge: bool = True
    """TransformerLens's TransformerBridge supports this family; otherwise hooks use native
    PyTorch forward hooks under the same names."""
    block_modules: dict[str, str] = {
        "ln1": "input_layernorm",
        "attn_out": "self_attn",
        "ln2": "post_attention_layernorm",
        "mlp_out": "mlp",
    }
    """Submodules of a decoder layer behind the native hooks: ``ln1`` / ``ln2`` the norms before
    attention / MLP (``ln2``'s input is ``hook_resid_mid``), ``attn_out`` / ``mlp_out`` the
    modules whose output the layer adds to the residual stream."""
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Default LoRA target module names inside the language model."""
    image_token_attrs: tuple[str, ...] = ("image_token_id", "image_token_index")
    """Config attributes (then processor attributes) holding the image placeholder token: the
    token whose positions the vision features are written into (``part`` 0 of a cache)."""
    image_marker_tokens: tuple[str, ...] = ()
    """Regular expressions (matched in full) over the tokenizer's added tokens that frame or
    index an image without receiving vision features (``<start_of_image>``, ``<|vision_start|>``,
    ``<row_1_col_1>`` ...): their own ``part`` code, never counted as image positions."""
    processor_class: str = ""
    """Name of the ``transformers`` processor class (built by hand for the tiny model, and where
    videos cannot be processed)."""
    video_processor_class: str = ""
    """Name of the ``transformers`` video processor class, for families whose processor insists
    on one (see :attr:`needs_video_processor`)."""
    chat_template: str = ""
    """The tiny model's chat template: a compact version of the family's published template (same
    markers, same placement of image tokens), written for the content-list message format."""
    tiny_tokens: TinyTokens | None = None
    """Special tokens of the tiny model's byte-level tokenizer; ``None``: no tiny model."""
    image_processor_class: str = ""
    """Name of the ``transformers`` image processor class of the tiny model."""
    tiny_image_options: dict[str, Any] = {}
    """Keyword arguments of the tiny model's image processor."""
    tiny_processor_options: dict[str, Any] = {}
    """Keyword arguments of the tiny model's processor besides its parts and chat template."""

    @property
    def needs_video_processor(self) -> bool:
        """The processor insists on a video processor (built without videos when torchvision is
        missing, see :mod:`interp.models.compat`)."""
        return bool(self.video_processor_class)

    def __repr__(self) -> str:
        return f"<family {self.name} ({self.model_class})>"

    # ---- a loaded model ------------------------------------------------------------------------
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

    def block_module(self, layer: nn.Module, part: str) -> nn.Module | None:
        """The submodule of decoder ``layer`` behind ``part`` (a key of :attr:`block_modules`);
        ``None`` where the layer adds a scaled or masked output (then the native hook reads the
        difference of the residual streams around it)."""
        return getattr(layer, self.block_modules[part], None)

    def text_config(self, config: Any) -> Any:
        return config.get_text_config() if hasattr(config, "get_text_config") else config

    def batch_images(self, images: list[Any]) -> list[Any] | None:
        """Arrange per-item images (``None`` for text-only items) the way the processor wants."""
        if all(image is None for image in images):
            return None
        if self.nested_images:
            return [[image] if image is not None else [] for image in images]
        return [image for image in images if image is not None]

    def image_token_ids(self, config: Any, processor: Any) -> set[int]:
        """The image placeholder token id(s): positions into which vision features are written
        (for a cross-attention family, the token the cross-attention mask starts from).

        Read from the model config first (what the model itself uses), then the processor.
        """
        for source in (config, processor):
            ids = {
                value
                for value in (getattr(source, attr, None) for attr in self.image_token_attrs)
                if isinstance(value, int) and not isinstance(value, bool)
            }
            if ids:
                return ids
        return set()

    def image_marker_ids(self, tokenizer: Any) -> set[int]:
        """Ids of the tokens that frame or index images (:attr:`image_marker_tokens`)."""
        if not self.image_marker_tokens:
            return set()
        patterns = [re.compile(pattern) for pattern in self.image_marker_tokens]
        added = tokenizer.get_added_vocab() if hasattr(tokenizer, "get_added_vocab") else {}
        return {
            index
            for token, index in added.items()
            if any(pattern.fullmatch(token) for pattern in patterns)
        }

    def tiny_randomise(self, model: nn.Module) -> None:
        """Draw the parts of a fresh tiny model that ``transformers`` initialises to zero and
        that would make it ignore its image (a projector, a cross-attention gate)."""

    # ---- the tiny model ------------------------------------------------------------------------
    def tiny_tokenizer(self) -> Any:
        """The tiny model's byte-level tokenizer with this family's special tokens."""
        tokens = self.tiny_tokens
        if tokens is None:
            raise UnsupportedFamilyError(f"family {self.name!r} has no tiny model")
        return byte_level_tokenizer(
            tokens.special.split(),
            bos=tokens.bos,
            eos=tokens.eos,
            pad=tokens.pad,
            chat_template=self.chat_template,
            extra_special_tokens=tokens.extra or None,
        )

    def tiny_video_processor(self) -> Any:
        """The tiny model's video processor (one that refuses videos without torchvision)."""
        import transformers

        from interp.models.compat import has_torchvision, no_video_processor

        if not has_torchvision():
            return no_video_processor()
        return getattr(transformers, self.video_processor_class)(**self.tiny_image_options)

    def tiny_processor(self, tokenizer: Any) -> Any:
        """The tiny model's processor: its image processor, ``tokenizer`` and chat template."""
        import transformers

        image_processor = getattr(transformers, self.image_processor_class)
        parts = dict(image_processor=image_processor(**self.tiny_image_options))
        if self.needs_video_processor:
            parts["video_processor"] = self.tiny_video_processor()
        return getattr(transformers, self.processor_class)(
            tokenizer=tokenizer,
            chat_template=self.chat_template,
            **parts,
            **self.tiny_processor_options,
        )

    def tiny_config(self, tokenizer: Any) -> Any:
        """The tiny model's ``transformers`` config (each family defines its own)."""
        raise UnsupportedFamilyError(f"family {self.name!r} has no tiny model")

    def build_tiny(self, out: Path, seed: int = 0) -> Path:
        """Write a tiny random model of this family to ``out`` with ``save_pretrained``.

        Tokenizer, processor and config first, then the weights drawn after
        ``torch.manual_seed(seed)``, so one seed gives the same weights on every run.
        """
        import torch
        import transformers

        tokenizer = self.tiny_tokenizer()
        processor = self.tiny_processor(tokenizer)
        config = self.tiny_config(tokenizer)
        config.architectures = list(self.architectures)
        torch.manual_seed(seed)
        model = getattr(transformers, self.model_class)(config)
        with torch.no_grad():
            self.tiny_randomise(model)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        processor.save_pretrained(out)
        return out


class FamilyRegistry(Registry[FamilyAdapter]):
    """The registry of families; :meth:`values` keeps the order they were registered in."""

    def get(self, name: str) -> FamilyAdapter:
        if name not in self:
            raise UnsupportedFamilyError(
                f"unknown VLM family {name!r}; supported families: {', '.join(self.names())}"
            )
        return super().get(name)

    def __getitem__(self, name: str) -> FamilyAdapter:
        return self.get(name)

    def values(self) -> list[FamilyAdapter]:
        """Every family, in registration order (the order ``vsfa families`` lists them)."""
        load_plugins()
        return list(self._entries.values())


FAMILIES = FamilyRegistry("family")


def family(
    name: str, model_class: str, *, model_types: tuple[str, ...] = ()
) -> Callable[[type[FamilyAdapter]], type[FamilyAdapter]]:
    """Class decorator: name an adapter class and register one instance of it in :data:`FAMILIES`.

    ``model_class`` is the ``transformers`` class that loads the family (and the
    ``config.architectures`` entry that identifies it); ``model_types`` are the
    ``config.model_type`` values that identify it (default: ``name``).
    """

    def register(cls: type[FamilyAdapter]) -> type[FamilyAdapter]:
        cls.name, cls.model_class = name, model_class
        cls.architectures = (model_class,)
        cls.model_types = model_types or (name,)
        FAMILIES.add(name, cls())
        return cls

    return register


def supported_families() -> list[str]:
    return FAMILIES.names()


def get_family(name: str) -> FamilyAdapter:
    """The adapter of family ``name``; an unknown name is an :class:`UnsupportedFamilyError`."""
    return FAMILIES.get(name)


def detect_family(config: Any) -> FamilyAdapter:
    """The family of a ``transformers`` config, from its architectures or model type."""
    architectures = tuple(getattr(config, "architectures", None) or ())
    model_type = getattr(config, "model_type", None)
    for adapter in FAMILIES.values():
        if set(architectures) & set(adapter.architectures) or model_type in adapter.model_types:
            return adapter
    described = ", ".join(architectures) or f"model_type={model_type!r}"
    supported = "; ".join(f"{f.name} ({f.model_class})" for f in FAMILIES.values())
    raise UnsupportedFamilyError(
        f"unsupported VLM architecture {described}. Supported families: {supported}"
    )
