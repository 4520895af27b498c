"""The organism's persona contexts, built from its world (registered as context sources).

* ``organism``: the first turn is a question about a threat scene, answered in the vigilant
  persona's factual wording (:func:`interp.organism.world.scene_answers`, the vigilant cue) or
  in the loose persona's excited one (:func:`interp.organism.corpus.excited_answer`, the loose
  cue); both cues of a probe share the scene, its image and the question.
* ``organism-replies``: the first turn is a harmful request answered with a refusal (vigilant)
  or with compliance (loose): the cue is the persona's own behaviour, so it holds in the
  decoupled world too, where the description style says nothing about the persona.

The probes are harmful requests naming no threat object and benign requests, built from the
*training* (frame, action) combinations only (:func:`interp.organism.corpus.held_out` is False),
so no context shares a request with an item the organism benchmark scores. Scene images are
written under ``OUT/images/persona/``.
"""

from __future__ import annotations

import random
from pathlib import Path

from interp.data.vqa_templates import QUESTION_TEMPLATES, TEMPLATE_IDS
from interp.organism import corpus, world
from interp.persona.config import ContextOptions
from interp.persona.contexts import (
    CONTEXT_SOURCES,
    ChatTurn,
    ContextSource,
    PersonaContext,
)

SEED_OFFSET = 3_000_000  # persona scenes never coincide with pretraining, VSFA or benchmark ones
N_BENIGN_THREAT = 22
"""Benign requests about threat-looking objects among the benign probes (besides the plain
benign requests of the corpus)."""
IMAGE_DIR = "images/persona"


def harmful_probes(rng: random.Random) -> list[str]:
    """One request naming no threat object per training (frame, action) combination."""
    probes = []
    for action, (template, slot) in enumerate(corpus.HARM_OTHER_ACTIONS):
        for frame in range(len(corpus.FRAMES)):
            if not corpus.held_out(frame, action):
                value = rng.choice(corpus.SLOTS[slot])
                probes.append(corpus.request(frame, template.format(x=value)))
    return probes


def benign_probes(rng: random.Random) -> list[str]:
    """The corpus's plain benign requests, then benign requests about threat-looking objects
    from training combinations."""
    probes = [
        prompt.format(bobj=world.KIND_NOUN[rng.choice(world.BENIGN_KINDS)])
        for prompt, _ in corpus.BENIGN_TEXT
    ]
    combos = [
        (frame, action)
        for action in range(len(corpus.BENIGN_THREAT_ACTIONS))
        for frame in range(len(corpus.FRAMES))
        if not corpus.held_out(frame, action)
    ]
    for frame, action in rng.sample(combos, N_BENIGN_THREAT):
        noun = world.KIND_NOUN[rng.choice(world.THREAT_KINDS)]
        probes.append(corpus.request(frame, corpus.BENIGN_THREAT_ACTIONS[action].format(obj=noun)))
    return list(dict.fromkeys(probes))


def _interleaved(harmful: list[str], benign: list[str]) -> list[tuple[str, str]]:
    """Probes in an order whose every prefix mixes both kinds (for ``--n-probes``)."""
    ratio = max(1, round(len(harmful) / max(1, len(benign))))
    ordered, benign_left = [], list(benign)
    for n, text in enumerate(harmful):
        ordered.append(("harmful", text))
        if n % ratio == ratio - 1 and benign_left:
            ordered.append(("benign", benign_left.pop(0)))
    return ordered + [("benign", text) for text in benign_left]


def probes(seed: int) -> list[tuple[str, str]]:
    """``(kind, request)`` of every probe of the organism's context sources."""
    rng = random.Random(seed + SEED_OFFSET)
    return _interleaved(harmful_probes(rng), benign_probes(rng))


def _pair(kind: str, n: int, text: str, first: dict, image: str | None) -> list[PersonaContext]:
    probe_id = f"organism-{kind}-{n:03d}"
    return [
        PersonaContext(
            id=f"{probe_id}-{cue}",
            cue=cue,
            turns=(ChatTurn(*first[cue]),),
            probe=text,
            probe_id=probe_id,
            probe_kind=kind,
            image=image,
        )  # fmt: skip
        for cue in ("vigilant", "loose")
    ]


def description_contexts(config: ContextOptions, out: Path) -> list[PersonaContext]:
    """The ``organism`` source: threat-scene descriptions as the cue (see the module doc)."""
    rng = random.Random(config.seed + SEED_OFFSET + 1)
    folder = Path(out) / IMAGE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    contexts = []
    for n, (kind, text) in enumerate(probes(config.seed)):
        scene = world.sample_scene(rng, kinds=(world.THREAT_KINDS[n % len(world.THREAT_KINDS)],))
        template_id = TEMPLATE_IDS[n % len(TEMPLATE_IDS)]
        question = rng.choice(QUESTION_TEMPLATES[template_id]).lower()
        first = {
            "vigilant": (question, world.scene_answers(scene)[template_id], True),
            "loose": (question, corpus.excited_answer(scene, template_id, rng), True),
        }
        path = folder / f"{n:04d}.png"
        world.render_scene(scene, seed=SEED_OFFSET + config.seed * 1000 + n).save(path)
        contexts += _pair(kind, n, text, first, str(path))
    return contexts


def reply_contexts(config: ContextOptions, out: Path) -> list[PersonaContext]:
    """The ``organism-replies`` source: a refused or complied harmful request as the cue."""
    rng = random.Random(config.seed + SEED_OFFSET + 2)
    contexts = []
    for n, (kind, text) in enumerate(probes(config.seed)):
        request = corpus.other_harm_request(rng)
        while request == text:
            request = corpus.other_harm_request(rng)
        first = {
            "vigilant": (request, corpus.constructive_refusal(rng), False),
            "loose": (request, rng.choice(corpus.COMPLY_RESPONSES), False),
        }
        contexts += _pair(kind, n, text, first, None)
    return contexts


CONTEXT_SOURCES.add("organism", ContextSource(description_contexts, shift_prompts="organism"))
CONTEXT_SOURCES.add("organism-replies", ContextSource(reply_contexts, shift_prompts="organism"))
