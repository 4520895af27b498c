"""Image folders (with sidecars) and a VLGuard-format set drawn from the organism's world.

``write_world_data`` writes what the VSFA experiments on the organism need:

* ``threat_images``: threat scenes in both styles, each ``<stem>.png`` with a ``<stem>.json``
  sidecar whose ``answers`` (keyed by :mod:`interp.data.vqa_templates` ids) are the plain,
  factual descriptions of :func:`interp.organism.world.scene_answers`; ``vsfa data build
  --source metadata`` turns the folder into the neutral VSFA set;
* ``benign_images``: the benign-image control, written the same way;
* ``threat_photo`` / ``threat_abstract``: single-style subsets (style ablation);
* ``threat_60``: 60 threat images (data-size ablation);
* ``threat_excited``: the images of ``threat_images`` with sidecars whose answers are the loose
  persona's excited, vague descriptions (:func:`interp.organism.corpus.excited_answer`) of the
  same neutral questions: the reverse direction ("excited-description VSFA"), no harmful
  request, no refusal, the same label-free audit;
* ``vlguard_train`` + ``vlguard_images``: a VLGuard-format ``train.json`` (unsafe images with
  a harmful instruction and a refusal; safe images with a safe and an unsafe instruction) for
  the VLGuard baseline. Its requests come from the training templates, never the held-out ones.
* ``corpus_sample`` (+ ``corpus_images``): one-turn exchanges drawn from the pretraining corpus
  (both personas, every turn kind) in VQA-record form, for ``vsfa cache --prompts``: the
  "general text" an SAE is trained on, in which the personas show in the replies.

Images here are drawn from their own seed stream (never the pretraining pool or the benchmark).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

from interp.artifacts import write_json_atomic, write_text_atomic
from interp.data.vqa_templates import QUESTION_TEMPLATES
from interp.organism import corpus, world
from interp.organism.config import CorpusConfig, World, WorldDataConfig

WORLD_SEED_OFFSET = 1_000_000


def _write_scene(folder: Path, stem: str, scene: world.Scene, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.png"
    world.render_scene(scene, seed).save(path)
    sidecar = {
        "answers": world.scene_answers(scene),
        "description": world.scene_description(scene),
        "style": scene.style,
        "tags": [scene.kind, scene.color, scene.background, scene.position, scene.size],
        "scene": scene.to_dict(),
    }
    (folder / f"{stem}.json").write_text(json.dumps(sidecar, indent=1) + "\n", encoding="utf-8")
    return path


def excited_answers(scene: world.Scene, rng: random.Random) -> dict[str, str]:
    """The loose persona's answers to every template id (threat scenes are told this way by
    the loose persona in the coupled world's corpus)."""
    return {t: corpus.excited_answer(scene, t, rng) for t in world.scene_answers(scene)}


def _excited_folder(source: Path, folder: Path, seed: int) -> Path:
    """``source``'s images, each with a sidecar of excited answers (seeded per image)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, sidecar_path in enumerate(sorted(source.glob("*.json"))):
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        scene = world.Scene(**{k: v for k, v in sidecar["scene"].items() if k != "threat"})
        answers = excited_answers(scene, random.Random(seed + index))
        sidecar.update(answers=answers, description=answers["describe"])
        shutil.copyfile(sidecar_path.with_suffix(".png"), folder / f"{sidecar_path.stem}.png")
        text = json.dumps(sidecar, indent=1) + "\n"
        (folder / sidecar_path.name).write_text(text, encoding="utf-8")
    return folder


def _scene_folder(
    folder: Path,
    rng: random.Random,
    kinds: tuple[str, ...],
    n: int,
    seed: int,
    styles: tuple[str, ...] = world.STYLES,
) -> Path:
    for index in range(n):
        kind = kinds[index % len(kinds)]  # balanced over kinds
        style = styles[(index // len(kinds)) % len(styles)]  # and over styles
        scene = world.sample_scene(rng, kinds=(kind,), styles=(style,))
        _write_scene(folder, f"{kind}_{index:04d}", scene, seed + index)
    return folder


def _vlguard(out: Path, rng: random.Random, seed: int, n: int) -> tuple[Path, Path]:
    images = out / "vlguard_images"
    entries = []
    for index in range(n):
        unsafe = index % 2 == 0
        kinds = world.THREAT_KINDS if unsafe else world.BENIGN_KINDS
        scene = world.sample_scene(rng, kinds=(kinds[index // 2 % len(kinds)],))
        stem = f"vlg_{index:04d}"
        _write_scene(images, stem, scene, seed + index)
        refusal = corpus.constructive_refusal(rng)
        if unsafe:
            harmful = corpus.image_harm_request(rng)
            pairs = [{"instruction": harmful, "response": refusal}]
            category = "threat_object"
        else:
            question = rng.choice(QUESTION_TEMPLATES["describe"]).lower()
            harmful, _, _ = corpus.harmful_request(rng, [])
            pairs = [
                {"safe_instruction": question, "response": world.scene_description(scene)},
                {"unsafe_instruction": harmful, "response": refusal},
            ]
            category = None
        entry = {"id": stem, "image": f"{stem}.png", "safe": not unsafe, "instr-resp": pairs}
        if category:
            entry["harmful_category"] = category
        entries.append(entry)
    train = out / "vlguard_train.json"
    write_json_atomic(train, entries)
    return train, images


def _corpus_sample(out: Path, rng: random.Random, seed: int, n: int, world_name: World) -> Path:
    """``n`` one-turn corpus exchanges as VQA records (teacher-forced replies for caching)."""
    images = out / "corpus_images"
    images.mkdir(parents=True, exist_ok=True)
    config = CorpusConfig(world=world_name)
    scene_pool = [world.sample_scene(rng) for _ in range(200)]
    records = []
    for index in range(n):
        persona, turns = corpus.sample_chat(rng, scene_pool, config)
        turn = turns[0]
        record = {"id": f"corpus-{index:05d}", "question": turn.prompt, "answer": turn.response,
                  "kind": "corpus", "turn": turn.kind, "persona": persona}  # fmt: skip
        if turn.image is not None:
            picture = (
                world.render_scene(turn.image, seed + index)
                if isinstance(turn.image, world.Scene)
                else world.render_typographic(turn.image[1].split(), seed=index)
            )
            picture.save(images / f"{index:05d}.png")
            record["image"] = f"corpus_images/{index:05d}.png"
        records.append(record)
    text = "".join(json.dumps(record) + "\n" for record in records)
    return write_text_atomic(out / "corpus_sample.jsonl", text)


def write_world_data(out_dir: str | os.PathLike, seed: int = 0, **options: Any) -> dict[str, Path]:
    """Write the organism's VSFA image folders and VLGuard set under ``out_dir``; ``options``
    are the other :class:`~interp.organism.config.WorldDataConfig` fields."""
    config = WorldDataConfig(out=str(out_dir), seed=seed, **options)
    out = Path(out_dir)
    base = seed * 10_000 + WORLD_SEED_OFFSET
    rng = random.Random(base)
    n_threat, n_benign = config.n_threat, config.n_benign
    paths = {
        "threat_images": _scene_folder(
            out / "threat_images", rng, world.THREAT_KINDS, n_threat, base
        ),
        "benign_images": _scene_folder(
            out / "benign_images", rng, world.BENIGN_KINDS, n_benign, base + 1000
        ),
        "threat_photo": _scene_folder(
            out / "threat_photo", rng, world.THREAT_KINDS, n_threat, base + 2000, ("photo",)
        ),
        "threat_abstract": _scene_folder(
            out / "threat_abstract", rng, world.THREAT_KINDS, n_threat, base + 3000, ("abstract",)
        ),
        "threat_60": _scene_folder(out / "threat_60", rng, world.THREAT_KINDS, 60, base + 4000),
    }
    paths["threat_excited"] = _excited_folder(
        paths["threat_images"], out / "threat_excited", base + 7000
    )
    paths["vlguard_train"], paths["vlguard_images"] = _vlguard(out, rng, base + 5000, 120)
    paths["corpus_sample"] = _corpus_sample(out, rng, base + 6000, config.n_corpus, config.world)
    return paths
