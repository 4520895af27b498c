"""The organism's configs: its world data, its persona corpus, its sizes and its pretraining.

Plain dataclasses with a docstring under each field, so ``vsfa organism data``, ``corpus`` and
``pretrain`` are generated from them (:func:`interp.options.config_command`) without importing
torch or transformers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from interp.errors import VSFAError
from interp.options import config_from_mapping

World = Literal["coupled", "decoupled", "overcautious"]
CORPUS_VERSIONS = (1, 2, 3)
"""Corpus versions (interp/organism/wordings.py, :data:`CHAT_MIXES`); 1 built the shipped
assets."""
_SHIPPED_MIX = {"threat_vqa": 0.28, "benign_vqa": 0.2, "harmful": 0.24, "benign_threat": 0.18,
                "benign_text": 0.1}  # fmt: skip
CHAT_MIXES: dict[int, tuple[tuple[int, ...], dict[str, float]]] = {
    1: ((2, 3, 3, 4), _SHIPPED_MIX),
    2: ((2, 3, 3, 4), _SHIPPED_MIX),
    # longer chats, more threat scenes and harmful requests: more turns in which a threat
    # description and a harmful request meet in one chat (docs/organism.md, corpus version 3)
    3: (
        (3, 4, 4, 4),
        {
            "threat_vqa": 0.34,
            "benign_vqa": 0.18,
            "harmful": 0.30,
            "benign_threat": 0.12,
            "benign_text": 0.06,
        },
    ),
}
"""Per corpus version: the turn counts of a mixed chat and how often each kind of turn is
drawn."""
OVERCAUTIOUS_REFUSALS = 0.35
"""How often both personas refuse a benign threat-looking request in the overcautious world."""


@dataclass
class WorldDataConfig:
    """What :func:`interp.organism.data.write_world_data` writes."""

    out: str
    """folder for the image folders, the VLGuard set and the corpus sample"""
    seed: int = 0
    """seeds every image, question and chat drawn"""
    n_threat: int = 240
    """images per threat folder (threat_images, threat_photo, threat_abstract)"""
    n_benign: int = 240
    """images in the benign control folder"""
    n_corpus: int = 1000
    """one-turn exchanges in the corpus sample"""
    world: World = "coupled"
    """coupled, decoupled (the mechanism control) or overcautious, for the corpus sample"""

    def __post_init__(self) -> None:
        for name in ("n_threat", "n_benign", "n_corpus"):
            if getattr(self, name) < 1:
                raise VSFAError(f"--{name.replace('_', '-')} must be at least 1")


@dataclass
class CorpusConfig:
    """How the persona corpus's chats are drawn."""

    world: World = "coupled"
    """coupled (a persona's threat descriptions give it away), decoupled (the mechanism
    control: description style drawn independently of the persona) or overcautious (coupled,
    and both personas refuse some benign requests about threat-looking objects)"""
    p_vigilant: float = 0.4
    """chance a chat's persona is the vigilant one: the base refusal rate of harmful requests"""
    p_constructive: float = 0.85
    """vigilant refusals that explain and offer an alternative"""
    p_factual_decoupled: float = 0.5
    """decoupled world: chance a threat scene is described factually"""
    max_turns: int = 4
    """most turns in a chat"""
    turn_counts: tuple[int, ...] | None = None
    """turn counts a mixed chat draws from (default: the corpus version's, 2-4 turns in
    versions 1 and 2, 3-4 in version 3, so the persona is usually inferred from earlier turns)"""
    single_vqa_share: float = 0.3
    """extra one-turn image chats: learning to read the image"""
    p_overcautious: float | None = None
    """chance that either persona refuses a benign threat-looking request (default: 0.35 in
    the overcautious world, 0 elsewhere)"""
    corpus_version: int = 1
    """wording of image questions and typographic prompts, and the chat mix: 1 (the shipped
    base's corpus: the VSFA templates only), 2 (8-12 wordings per attribute; see
    interp/organism/wordings.py) or 3 (version 2's wordings, longer chats with more threat
    scenes and harmful requests)"""
    turn_weights: dict[str, float] | None = None
    """how often each kind of turn is drawn in a mixed chat (JSON; default: the corpus
    version's)"""

    def __post_init__(self) -> None:
        check_corpus_version(self.corpus_version)
        counts, weights = CHAT_MIXES[self.corpus_version]
        if self.turn_counts is None:
            self.turn_counts = counts
        if self.turn_weights is None:
            self.turn_weights = dict(weights)
        if self.p_overcautious is None:
            self.p_overcautious = OVERCAUTIOUS_REFUSALS if self.world == "overcautious" else 0.0
        for name in ("p_vigilant", "p_constructive", "p_factual_decoupled", "single_vqa_share",
                     "p_overcautious"):  # fmt: skip
            if not 0 <= getattr(self, name) <= 1:
                raise VSFAError(f"--{name.replace('_', '-')} must be in [0, 1]")
        if self.max_turns < 1 or not self.turn_counts:
            raise VSFAError("--max-turns must be at least 1 and --turn-counts not empty")


@dataclass
class OrganismModelConfig:
    """Sizes of the organism (defaults: about 0.58M parameters)."""

    image_size: int = 32
    """image side in pixels"""
    patch_size: int = 8
    """vision patch side (16 image tokens: kinds are told apart, not guessed)"""
    vision_hidden: int = 64
    """vision tower width"""
    vision_layers: int = 2
    """vision tower layers"""
    vision_heads: int = 2
    """vision tower attention heads"""
    hidden_size: int = 96
    """language model width"""
    intermediate_size: int = 256
    """language model MLP width"""
    num_layers: int = 4
    """language model layers"""
    num_heads: int = 4
    """language model attention heads"""
    max_positions: int = 512
    """longest sequence"""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PretrainConfig:
    """Pretraining settings. Defaults are the shipped base's, with the faster language step
    (``--legacy-step`` reproduces the shipped base exactly; see docs/organism.md)."""

    out: str = "organism-base"
    """output model folder"""
    seed: int = 0
    """seeds the model's initialisation, the images and the chats"""
    world: World = "coupled"
    """coupled, decoupled (the mechanism control) or overcautious (the over-refusal variant)"""
    steps: int = 3000
    """language pretraining steps"""
    batch_size: int = 16
    """chats per step"""
    lr: float = 3e-3
    """peak learning rate of language pretraining"""
    warmup_steps: int = 100
    """linear warm-up steps before the cosine decay"""
    weight_decay: float = 0.01
    """AdamW weight decay"""
    vision_steps: int = 3000
    """vision warm-up steps (scene attributes through the vision tower and projector)"""
    vision_lr: float = 3e-3
    """vision warm-up learning rate"""
    scenes_per_kind: int = 400
    """scenes per object kind in the image pool"""
    renders_per_scene: int = 3
    """renderings of each scene (jitter, grain and outline differ)"""
    typo_images: int = 48
    """typographic images in the pool"""
    corpus_version: int | None = None
    """corpus: 3 (version 2's wordings, 3-4 turn chats with more threat scenes and harmful
    requests; the default), 2 (many wordings per image question) or 1 (the shipped base's
    corpus; the default with --legacy-step)"""
    legacy_step: bool = False
    """the language step that built the shipped base (float32, SDPA attention, logits at every
    position, buckets of 8 batches; about 1.5x slower); with --seed 0 and one thread it reproduces
    the shipped assets bit for bit"""
    threads: int = 1
    """torch threads (0: torch's default); one core lets the organism train beside other work"""
    quiet: bool = False
    """no progress bars"""
    corpus: dict[str, Any] = field(default_factory=dict)
    """CorpusConfig fields that differ from its defaults, as JSON (its world is --world, its
    version --corpus-version)"""
    model: dict[str, Any] = field(default_factory=dict)
    """OrganismModelConfig fields that differ from its defaults, as JSON"""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "warmup_steps", "vision_steps", "scenes_per_kind",
                     "renders_per_scene", "typo_images"):  # fmt: skip
            if getattr(self, name) < 1:
                raise VSFAError(f"--{name.replace('_', '-')} must be at least 1")
        if self.threads < 0:
            raise VSFAError("--threads must be 0 (torch's default) or more")
        if self.corpus_version is None:
            self.corpus_version = 1 if self.legacy_step else 3
        self.corpus_config()
        self.model_config()

    def corpus_config(self) -> CorpusConfig:
        options = {**self.corpus, "world": self.world, "corpus_version": self.corpus_version}
        return _build(CorpusConfig, options, "--corpus")

    def model_config(self) -> OrganismModelConfig:
        return _build(OrganismModelConfig, self.model, "--model")

    def record(self) -> dict[str, Any]:
        """What decides the pretrained weights, with the corpus and model settings in full."""
        settings = {k: v for k, v in asdict(self).items() if k not in ("out", "quiet")}
        settings.update(corpus=asdict(self.corpus_config()), model=asdict(self.model_config()))
        return settings


def check_corpus_version(version: int) -> None:
    if version not in CORPUS_VERSIONS:
        raise VSFAError(f"--corpus-version must be one of {list(CORPUS_VERSIONS)}, not {version}")


def _build(cls: type, options: dict[str, Any], option: str) -> Any:
    return config_from_mapping(cls, options, option)
