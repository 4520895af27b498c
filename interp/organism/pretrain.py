"""Pretraining the organism from scratch on the persona corpus (CPU, minutes).

Two phases:

1. **vision warm-up** (the organism's stand-in for a pretrained image encoder): the CLIP tower
   and the projector learn to classify scene attributes (kind, colour, background, position,
   size, count, style) from the projected patch features with a throwaway linear head;
2. **language pretraining**: the whole LLaVA model learns the multi-turn persona chats with the
   loss on assistant tokens only.

The language step (:func:`lean_loss`) runs the matrix multiplies in bfloat16 under autocast
(weights, optimizer and loss in float32), uses eager attention (faster than the CPU SDPA kernel
at a head width of 24), computes logits only where a label is, uses the fused AdamW kernel and
draws length buckets from 32 batches' worth of chats (less padding). ``legacy_step`` keeps the
step that built the shipped base (float32, SDPA, logits everywhere, foreach AdamW, buckets of 8
batches): at one thread it reproduces the shipped assets bit for bit.

Everything is seeded; the output folder is a ``save_pretrained`` LLaVA folder plus
``manifest.json`` and ``history.json`` (loss curve, tokens/s).
"""

from __future__ import annotations

import math
import random
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from interp.artifacts import make_manifest, write_json_atomic
from interp.organism import corpus, world
from interp.organism import model as organism_model
from interp.organism.config import PretrainConfig
from interp.organism.corpus import Turn
from interp.organism.world import Scene

IGNORE = -100


# ---- images ----------------------------------------------------------------------------------


@dataclass
class ImagePool:
    """Rendered scenes and typographic images with their pixel tensors (processor output).

    Each scene is rendered several times (different jitter, grain and outline), so neither the
    encoder nor the language model can learn a scene's kind from one rendering's pixels.
    ``scene_pixels`` is ``[scenes, renders, channels, height, width]``.
    """

    scenes: list[Scene]
    scene_pixels: torch.Tensor
    typo_texts: list[str]
    typo_pixels: torch.Tensor
    seed: int = 0

    def __post_init__(self) -> None:
        self._index = {scene: i for i, scene in enumerate(self.scenes)}
        self._rng = random.Random(self.seed)

    def pixels(self, image: Any) -> torch.Tensor:
        """Pixels of a scene (a seeded random rendering of it), or of a typographic image
        (picked by a stable hash of the text)."""
        if isinstance(image, Scene):
            renders = self.scene_pixels[self._index[image]]
            return renders[self._rng.randrange(renders.shape[0])]
        return self.typo_pixels[zlib.crc32(image[1].encode()) % len(self.typo_texts)]


def pixel_values(processor: Any, images: list) -> torch.Tensor:
    return processor.image_processor(images=images, return_tensors="pt")["pixel_values"]


def build_pool(
    processor: Any, seed: int, per_kind: int, n_typo: int, renders: int = 1
) -> ImagePool:
    """``per_kind`` distinct scenes of every kind (at most all of them), each rendered
    ``renders`` times, and ``n_typo`` typographic images."""
    rng = random.Random(seed * 7919 + 11)
    scenes: list[Scene] = []
    per_kind = min(per_kind, world.distinct_scenes())
    for kind in world.KINDS:
        seen: set[Scene] = set()
        while len(seen) < per_kind:
            seen.add(world.sample_scene(rng, kinds=(kind,)))
        scenes += sorted(seen, key=lambda s: tuple(str(v) for v in asdict(s).values()))
    images = [
        world.render_scene(scene, seed=(i * renders + r) + seed * 1_000_000)
        for i, scene in enumerate(scenes)
        for r in range(renders)
    ]
    pixels = pixel_values(processor, images)
    pixels = pixels.reshape(len(scenes), renders, *pixels.shape[1:])
    texts = [corpus.other_harm_request(rng) for _ in range(n_typo)]
    typo = [world.render_typographic(t.split(), seed=i) for i, t in enumerate(texts)]
    typo_pixels = pixel_values(processor, typo)
    return ImagePool(corpus.ScenePool(scenes), pixels, texts, typo_pixels, seed=seed)


# ---- encoding --------------------------------------------------------------------------------


def chat_segments(turns: list[Turn]) -> list[tuple[str, bool]]:
    """The LLaVA chat text of ``turns`` as (text, is_target) segments.

    Mirrors :data:`interp.models.families.llava.LLAVA_TEMPLATE` exactly (a test checks this), so
    the model is trained on the same token sequence that ``VLM.prepare`` builds at inference.
    """
    segments: list[tuple[str, bool]] = []
    for turn in turns:
        image = "<image>\n" if turn.image is not None else ""
        segments.append((f"USER: {image}{turn.prompt} ASSISTANT: ", False))
        segments.append((f"{turn.response}</s>", True))
    return segments


def encode_chats(
    tokenizer: Any, chats: list[list[Turn]], image_tokens: int
) -> list[tuple[list[int], list[int]]]:
    """Per chat: token ids (image tokens expanded) and labels (-100 outside the assistant's
    replies); one tokenizer call for all segments of all chats."""
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    segments = [chat_segments(turns) for turns in chats]
    flat = [text for chat in segments for text, _ in chat]
    encoded = iter(tokenizer(flat, add_special_tokens=False)["input_ids"])
    result = []
    for chat in segments:
        ids: list[int] = []
        labels: list[int] = []
        for (_, target), seg_ids in zip(chat, encoded):
            expanded: list[int] = []
            for token in seg_ids:
                expanded += [image_id] * image_tokens if token == image_id else [token]
            ids += expanded
            labels += expanded if target else [IGNORE] * len(expanded)
        result.append((ids, labels))
    return result


def encode_chat(
    tokenizer: Any, turns: list[Turn], image_tokens: int
) -> tuple[list[int], list[int]]:
    """Token ids (image tokens expanded) and labels (-100 outside the assistant's replies)."""
    return encode_chats(tokenizer, [turns], image_tokens)[0]


def collate(
    tokenizer: Any, chats: list[list[Turn]], pool: ImagePool, image_tokens: int
) -> dict[str, torch.Tensor]:
    encoded = encode_chats(tokenizer, chats, image_tokens)
    width = max(len(ids) for ids, _ in encoded)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(chats), width), pad, dtype=torch.long)
    labels = torch.full((len(chats), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(chats), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(labs)
        mask[row, : len(ids)] = 1
    batch = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
    images = [turn.image for turns in chats for turn in turns if turn.image is not None]
    if images:
        batch["pixel_values"] = torch.stack([pool.pixels(image) for image in images])
    return batch


# ---- phases ----------------------------------------------------------------------------------

ATTRIBUTES: dict[str, list] = {
    "kind": list(world.KINDS) + ["typographic"],
    "color": list(world.COLORS),
    "background": list(world.BACKGROUNDS),
    "position": list(world.POSITIONS),
    "size": list(world.SIZES),
    "count": [1, 2],
    "style": list(world.STYLES),
}


def _image_features(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Projected patch features ``[batch, patches * hidden]`` (what the language model sees)."""
    features = model.model.get_image_features(pixel_values=pixels)
    if hasattr(features, "pooler_output"):
        features = features.pooler_output
    if isinstance(features, (list, tuple)):
        features = torch.stack(list(features))
    return features.reshape(pixels.shape[0], -1)


def vision_warmup(model: nn.Module, pool: ImagePool, config: PretrainConfig) -> list[float]:
    """Supervised attribute classification through the vision tower and projector."""
    gen = torch.Generator().manual_seed(config.seed)
    renders = pool.scene_pixels.shape[1]
    scenes = [scene for scene in pool.scenes for _ in range(renders)]
    n_scenes = len(scenes)
    pixels = torch.cat([pool.scene_pixels.flatten(0, 1), pool.typo_pixels])
    labels = {
        name: torch.tensor(
            [values.index(getattr(s, name)) for s in scenes]
            + [values.index("typographic") if name == "kind" else 0] * len(pool.typo_texts)
        )
        for name, values in ATTRIBUTES.items()
    }
    has_scene_attrs = torch.arange(len(pixels)) < n_scenes
    with torch.no_grad():
        width = _image_features(model, pixels[:1]).shape[1]
    heads = nn.ModuleDict({name: nn.Linear(width, len(v)) for name, v in ATTRIBUTES.items()})
    params = list(model.model.vision_tower.parameters())
    params += list(model.model.multi_modal_projector.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.vision_lr)
    losses = []
    for _ in tqdm(range(config.vision_steps), desc="vision warm-up", disable=config.quiet):
        index = torch.randint(0, len(pixels), (64,), generator=gen)
        features = _image_features(model, pixels[index])
        loss = torch.zeros(())
        for name, head in heads.items():
            logits = head(features)
            target = labels[name][index]
            if name == "kind":
                loss = loss + nn.functional.cross_entropy(logits, target)
            else:
                keep = has_scene_attrs[index]
                loss = loss + nn.functional.cross_entropy(logits[keep], target[keep])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _lr_factor(step: int, config: PretrainConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


LEGACY_GROUP, BUCKET_GROUP = 8, 32


def length_buckets(
    rng: random.Random, pool: ImagePool, config: PretrainConfig, group: int | None = None
) -> list[list[list[Turn]]]:
    """``group`` batches of chats of similar length (padding would waste half the compute);
    by default 32 batches (8 with ``legacy_step``)."""
    if group is None:
        group = LEGACY_GROUP if config.legacy_step else BUCKET_GROUP
    settings = config.corpus_config()
    chats = [
        corpus.sample_chat(rng, pool.scenes, settings)[1] for _ in range(config.batch_size * group)
    ]
    chats.sort(
        key=lambda turns: sum(
            len(t.prompt) + len(t.response) + 60 * (t.image is not None) for t in turns
        )
    )
    batches = [chats[i : i + config.batch_size] for i in range(0, len(chats), config.batch_size)]
    rng.shuffle(batches)
    return batches


def padded_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The shipped base's step: float32, logits at every position (``transformers``' loss)."""
    return model(**batch).loss


def lean_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The same next-token loss on the assistant's tokens, with bfloat16 matrix multiplies
    (autocast) and the language-model head applied only at positions that have a label."""
    autocast = torch.autocast(model.device.type, dtype=torch.bfloat16)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with autocast:
        hidden = model.model(**inputs).last_hidden_state[:, :-1]
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    with autocast:
        logits = model.lm_head(hidden[keep])
    return nn.functional.cross_entropy(logits.float(), targets[keep])


def training_step(config: PretrainConfig):
    """The loss function and attention implementation of the configured language step."""
    if config.legacy_step:
        return padded_loss, "sdpa"
    return lean_loss, "eager"


def pretrain(config: PretrainConfig) -> Path:
    """Build and pretrain an organism; returns the output folder (loadable by ``load_vlm``)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    started = time.time()
    out = Path(config.out)
    sizes = config.model_config()
    processor = organism_model.build_processor(sizes)
    tokenizer = processor.tokenizer
    model = organism_model.build_model(tokenizer, sizes, seed=config.seed)
    model.train()
    pool = build_pool(
        processor, config.seed, config.scenes_per_kind, config.typo_images, config.renders_per_scene
    )
    image_tokens = organism_model.image_tokens_per_image(sizes)

    vision_losses = vision_warmup(model, pool, config)

    # the warmed-up encoder stays fixed (like a pretrained CLIP); projector and LM learn
    model.model.vision_tower.requires_grad_(False)
    loss_of, attention = training_step(config)
    model.set_attn_implementation(attention)
    rng = random.Random(config.seed)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
        betas=(0.9, 0.98),
        fused=None if config.legacy_step else True,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, config))
    history: list[dict[str, float]] = []
    tokens_seen, train_started = 0, time.time()
    bar = tqdm(range(config.steps), desc="pretrain", disable=config.quiet)
    batches: list[list[list[Turn]]] = []
    for step in bar:
        if not batches:
            batches = length_buckets(rng, pool, config)
        batch = collate(tokenizer, batches.pop(), pool, image_tokens)
        loss = loss_of(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        tokens_seen += int(batch["attention_mask"].sum())
        rate = tokens_seen / max(1e-6, time.time() - train_started)
        if step % 20 == 0 or step == config.steps - 1:
            history.append({"step": step, "loss": loss.item(), "tokens_per_s": rate})
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{rate:,.0f}")
    model.eval()
    model.set_attn_implementation("sdpa")
    organism_model.save_organism(model, processor, out)
    write_json_atomic(out / "history.json", {"vision": vision_losses[::10], "pretrain": history})
    manifest = make_manifest(
        "organism.pretrain",
        config.record(),
        seed=config.seed,
        complete=True,
        tokens=tokens_seen,
        tokens_per_s=tokens_seen / max(1e-6, time.time() - train_started),
        seconds=time.time() - started,
        final_loss=history[-1]["loss"] if history else None,
        parameters=sum(p.numel() for p in model.parameters()),
    )
    write_json_atomic(out / "manifest.json", manifest)
    return out
