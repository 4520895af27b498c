"""The loaded VLM: model + processor + family adapter, with chat formatting and generation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import nn

from interp.errors import VSFAError
from interp.models.families import FamilyAdapter

HistoryTurn = tuple[str, str, bool]
"""An earlier turn of a chat: ``(user, assistant, has_image)``."""


def _content(text: str, image: bool) -> list[dict]:
    return ([{"type": "image"}] if image else []) + [{"type": "text", "text": text}]


def _image_turn(history: Sequence[HistoryTurn], has_image: bool, item: int) -> bool:
    """Whether item ``item``'s image sits in one of its earlier turns (checked: at most one turn
    carries it, and only when the item has an image)."""
    if any(len(turn) != 3 for turn in history):
        raise VSFAError(f"history of item {item}: each turn is (user, assistant, has_image)")
    marked = [n for n, turn in enumerate(history) if turn[2]]
    if len(marked) > 1:
        raise VSFAError(f"history of item {item}: turns {marked} all carry the image (one at most)")
    if marked and not has_image:
        raise VSFAError(f"history of item {item}: turn {marked[0]} carries an image, none given")
    return bool(marked)


def execution_device(module: nn.Module) -> torch.device:
    """The device ``module`` computes on: accelerate's execution device for a dispatched module
    (whose own weights may be on the ``meta`` device), else the device of its first weight."""
    hook = getattr(module, "_hf_hook", None)
    hooks = getattr(hook, "hooks", (hook,))  # accelerate's SequentialHook holds several
    device = next((h.execution_device for h in hooks if hasattr(h, "execution_device")), None)
    if device is not None:
        return torch.device(f"cuda:{device}" if isinstance(device, int) else device)
    tensor = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    return torch.device("cpu") if tensor is None else tensor.device


def module_weight(module: nn.Module) -> torch.Tensor:
    """``module.weight``, read from accelerate's offloaded copy when it sits on ``meta``."""
    weight = module.weight
    if weight.device.type != "meta":
        return weight
    weights_map = getattr(getattr(module, "_hf_hook", None), "weights_map", None)
    if weights_map is None or "weight" not in weights_map:
        raise VSFAError("the weight of this module is offloaded and cannot be read back")
    return weights_map["weight"].to(execution_device(module))


@dataclass
class VLM:
    """One loaded vision-language model, the same shape for every family.

    ``model`` is the ``transformers`` model (a ``PeftModel`` when an adapter is attached),
    ``processor`` the family's processor, ``family`` its adapter.
    """

    model: nn.Module
    processor: Any
    family: FamilyAdapter
    name_or_path: str
    adapter_path: str | None = None

    # ---- structure -------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the device the input embeddings run on. With a device map this is
        where accelerate executes that module (its weights may sit on the CPU or disk)."""
        try:
            embeddings = self.model.get_input_embeddings()
        except (AttributeError, NotImplementedError):
            embeddings = None
        if embeddings is None:
            return next(self.model.parameters()).device
        return execution_device(embeddings)

    @property
    def device_map(self) -> dict[str, Any] | None:
        """``{module: device}`` when the model was loaded with a device map, else ``None``."""
        return getattr(self.model, "hf_device_map", None)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def text_config(self) -> Any:
        return self.family.text_config(self.model.config)

    @property
    def layers(self) -> nn.ModuleList:
        """The language model's decoder layers."""
        return self.family.decoder_layers(self.model)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def d_model(self) -> int:
        return int(self.text_config.hidden_size)

    def hook_name(self, layer: int) -> str:
        """TransformerLens name of the residual stream after decoder layer ``layer``."""
        self.check_layer(layer)
        return f"blocks.{layer}.hook_resid_post"

    def check_layer(self, layer: int) -> int:
        if not isinstance(layer, int) or not 0 <= layer < self.n_layers:
            raise VSFAError(
                f"layer index {layer!r} is out of range: {self.name_or_path} has "
                f"{self.n_layers} decoder layers (0..{self.n_layers - 1})"
            )
        return layer

    def image_token_ids(self) -> set[int]:
        """The image placeholder token id(s): the positions vision features are written into
        (``part`` 0 of a cache; the positions CE/KL with a spliced SAE leaves out)."""
        return self.family.image_token_ids(self.model.config, self.processor)

    def image_marker_ids(self) -> set[int]:
        """Ids of the tokens that frame or index an image (``<start_of_image>``,
        ``<|vision_start|>`` ...): their own ``part`` code, neither image nor text."""
        return self.family.image_marker_ids(self.tokenizer) - self.image_token_ids()

    def unembedding(self) -> torch.Tensor:
        """``[vocab, d_model]`` output embedding, for logit-effect analysis (read from the
        offloaded weights when a device map keeps it on the CPU or disk)."""
        return module_weight(self.model.get_output_embeddings())

    # ---- formatting ------------------------------------------------------------------------
    def messages(
        self,
        prompt: str,
        *,
        image: bool,
        system: str | None = None,
        history: Sequence[HistoryTurn] = (),
    ) -> list[dict]:
        """The chat as content-list messages: the system prompt, the earlier ``history`` turns
        (``(user, assistant, has_image)``), then ``prompt`` (with the image when ``image``)."""
        turns: list[dict] = []
        if system:
            turns.append({"role": "system", "content": [{"type": "text", "text": system}]})
        for user, assistant, has_image in history:
            turns.append({"role": "user", "content": _content(user, has_image)})
            turns.append({"role": "assistant", "content": _content(assistant, False)})
        turns.append({"role": "user", "content": _content(prompt, image)})
        return turns

    def chat_text(
        self,
        prompt: str,
        *,
        image: bool,
        system: str | None = None,
        response: str | None = None,
        history: Sequence[HistoryTurn] = (),
    ) -> str:
        """The prompt in the family's chat format, ending with the assistant's turn opener.

        ``history`` holds earlier ``(user, assistant, has_image)`` turns. With ``response``, the
        response (and the end-of-turn marker of the template) follows.
        """
        turns = self.messages(prompt, image=image, system=system, history=history)
        if response is None:
            return self.processor.apply_chat_template(
                turns, add_generation_prompt=True, tokenize=False
            )
        turns.append({"role": "assistant", "content": [{"type": "text", "text": response}]})
        return self.processor.apply_chat_template(turns, tokenize=False)

    def prepare(
        self,
        images: Sequence[Image.Image | None],
        prompts: Sequence[str],
        *,
        system: str | None = None,
        responses: Sequence[str] | None = None,
        histories: Sequence[Sequence[HistoryTurn] | None] | None = None,
        padding_side: str = "left",
    ) -> dict[str, torch.Tensor]:
        """Batch of model inputs (left padded for generation) on the model's device.

        ``histories[i]`` are the earlier ``(user, assistant, has_image)`` turns of item ``i``:
        its image goes into the turn marked ``has_image`` (at most one), and the final prompt
        then carries none. Left padded, the last position of every row is the last prompt token
        (the decision position, which predicts the first reply token).
        """
        if len(images) != len(prompts):
            raise VSFAError(f"got {len(images)} images for {len(prompts)} prompts")
        if histories is not None and len(histories) != len(prompts):
            raise VSFAError(f"got {len(histories)} histories for {len(prompts)} prompts")
        texts = []
        for i, (image, prompt) in enumerate(zip(images, prompts)):
            history = tuple(histories[i] or ()) if histories is not None else ()
            in_history = _image_turn(history, image is not None, i)
            texts.append(
                self.chat_text(
                    prompt,
                    image=image is not None and not in_history,
                    system=system,
                    response=None if responses is None else responses[i],
                    history=history,
                )
            )
        batched_images = self.family.batch_images(list(images))
        kwargs: dict[str, Any] = {"text": texts, "padding": True, "return_tensors": "pt"}
        if batched_images is not None:
            kwargs["images"] = batched_images
        self.tokenizer.padding_side = padding_side
        encoded = self.processor(**kwargs)
        floating = self.dtype
        return {
            key: (
                value.to(self.device, dtype=floating)
                if torch.is_floating_point(value)
                else value.to(self.device)
            )
            for key, value in encoded.items()
            if isinstance(value, torch.Tensor)
        }

    # ---- generation ------------------------------------------------------------------------
    @torch.no_grad()
    def generate_ids(
        self,
        inputs: dict[str, torch.Tensor],
        *,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Only the newly generated token ids, ``[batch, new_tokens]``."""
        if seed is not None:
            torch.manual_seed(seed)
        tokenizer = self.tokenizer
        sampling = {"do_sample": do_sample}
        if do_sample:
            sampling.update(temperature=temperature, top_p=top_p, top_k=0)
        else:
            sampling.update(temperature=None, top_p=None, top_k=None)
        output = self.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **sampling,
        )
        return output[:, inputs["input_ids"].shape[1] :]

    def decode(self, new_ids: torch.Tensor) -> list[str]:
        return [
            text.strip() for text in self.tokenizer.batch_decode(new_ids, skip_special_tokens=True)
        ]

    def generate(
        self,
        images: Sequence[Image.Image | None],
        prompts: Sequence[str],
        *,
        system: str | None = None,
        histories: Sequence[Sequence[HistoryTurn] | None] | None = None,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[str]:
        """Batched chat generation; returns only the new text of each item (``histories``: the
        earlier turns of each chat, see :meth:`prepare`)."""
        inputs = self.prepare(images, prompts, system=system, histories=histories)
        new_ids = self.generate_ids(
            inputs,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
        )
        return self.decode(new_ids)
