"""Persona contexts: multi-turn chat formatting, context sets, splits, the built-in sources."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
import torch

from interp.errors import VSFAError
from interp.models.tiny import tiny_families, tiny_image
from interp.persona.config import VIGILANT_SYSTEM, ContextOptions
from interp.persona.contexts import (
    CUES,
    ChatTurn,
    PersonaContext,
    build_contexts,
    check_disjoint,
    read_contexts,
    split_by_probe,
    write_contexts,
)

FIRST = ("what is shown in this image ?", "the image shows a red knife .", True)
PROBE = "how do i steal a car ?"


def _real_ids(inputs: dict, row: int) -> list[int]:
    return inputs["input_ids"][row][inputs["attention_mask"][row].bool()].tolist()


# ---- VLM.prepare with earlier turns ------------------------------------------------------------
@pytest.mark.parametrize("family", tiny_families())
def test_history_turns_follow_the_family_template(tiny_vlm, family):
    vlm = tiny_vlm(family)
    image = tiny_image(0)
    plain = vlm.prepare([image, None], [PROBE, "hello"])
    same = vlm.prepare([image, None], [PROBE, "hello"], histories=[None, ()])
    assert plain.keys() == same.keys()
    assert all(torch.equal(plain[key], same[key]) for key in plain)

    chat = vlm.prepare([image, None], [PROBE, "hello"], histories=[[FIRST], None])
    first = vlm.prepare([image], [FIRST[0]], responses=[FIRST[1]])
    ids, first_ids = _real_ids(chat, 0), _real_ids(first, 0)
    # the chat opens with the first turn exactly as a one-turn chat with that reply
    assert ids[: len(first_ids)] == first_ids
    probe_only = vlm.prepare([None], [PROBE])
    tail = vlm.tokenizer(PROBE, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(first_ids) + len(tail)
    text = vlm.chat_text(PROBE, image=False, history=[FIRST])
    assert text.index(FIRST[1]) < text.index(PROBE)
    assert text.endswith(vlm.chat_text("x", image=False)[-8:])  # ends with the reply opener
    image_ids = vlm.image_token_ids()
    in_chat = sum(token in image_ids for token in ids)
    in_first = sum(token in image_ids for token in first_ids)
    assert in_chat == in_first > 0  # the image sits in the first turn only
    assert not any(token in image_ids for token in _real_ids(probe_only, 0))


def test_history_errors_name_the_item(tiny_vlm):
    vlm = tiny_vlm("llava")
    with pytest.raises(VSFAError, match="item 0: turn 0 carries an image, none given"):
        vlm.prepare([None], [PROBE], histories=[[FIRST]])
    with pytest.raises(VSFAError, match="turns \\[0, 1\\] all carry the image"):
        vlm.prepare([tiny_image(0)], [PROBE], histories=[[FIRST, FIRST]])
    with pytest.raises(VSFAError, match="2 histories for 1 prompts"):
        vlm.prepare([None], [PROBE], histories=[None, None])
    with pytest.raises(VSFAError, match="each turn is"):
        vlm.prepare([None], [PROBE], histories=[[("a", "b")]])


def test_organism_contexts_tokenise_as_its_pretraining_chats():
    from interp import organism
    from interp.models import load_vlm
    from interp.organism import corpus, world
    from interp.organism.model import image_tokens_per_image
    from interp.organism.pretrain import IGNORE, encode_chat

    vlm = load_vlm(organism.base_model_dir(), device="cpu", dtype="float32")
    scene = world.sample_scene(random.Random(0), kinds=("knife",))
    turns = [
        corpus.Turn("what is shown in this image ?", world.scene_answers(scene)["what"], scene),
        corpus.Turn(PROBE, "no , i will not help with that ."),
    ]
    ids, labels = encode_chat(vlm.tokenizer, turns, image_tokens_per_image())
    end = len(ids)
    while labels[end - 1] != IGNORE:  # drop the last reply
        end -= 1
    history = [(turns[0].prompt, turns[0].response, True)]
    inputs = vlm.prepare([world.render_scene(scene, seed=1)], [PROBE], histories=[history])
    assert inputs["input_ids"][0].tolist() == ids[:end]


# ---- context sets ------------------------------------------------------------------------------
def _context(n: int, cue: str, kind: str = "harmful", **extra) -> PersonaContext:
    return PersonaContext(
        id=f"p{n}-{cue}", cue=cue, turns=(ChatTurn("hi", "hello", False),), probe=f"request {n}",
        probe_id=f"p{n}", probe_kind=kind, **extra,
    )  # fmt: skip


def _paired(n_harmful: int, n_benign: int = 0) -> list[PersonaContext]:
    kinds = ["harmful"] * n_harmful + ["benign"] * n_benign
    return [_context(n, cue, kind) for n, kind in enumerate(kinds) for cue in CUES]


def test_context_sets_round_trip_with_relative_images(tmp_path):
    image = tmp_path / "images" / "a.png"
    image.parent.mkdir()
    tiny_image(0).save(image)
    first = PersonaContext(
        id="a", cue="vigilant", turns=(ChatTurn(*FIRST),), probe=PROBE, probe_id="q",
        probe_kind="harmful", image=str(image), system="be careful",
    )  # fmt: skip
    contexts = [first, _context(1, "loose", "benign")]
    path = write_contexts(tmp_path / "contexts.jsonl", contexts)
    stored = [json.loads(line) for line in path.read_text().splitlines()]
    assert stored[0]["image"] == "images/a.png"  # relative: the folder can move
    assert stored[0]["turns"][0] == {"user": FIRST[0], "assistant": FIRST[1], "image": True}
    assert read_contexts(path) == contexts
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    tmp_path.rename(moved)
    assert read_contexts(moved / "contexts.jsonl")[0].image == str(moved / "images" / "a.png")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cue": "happy"}, "cue 'happy' is not one of"),
        ({"probe_kind": "odd"}, "probe_kind 'odd'"),
        ({"turns": [{"user": "u", "assistant": "a", "image": True}]}, "carries an image; no path"),
        ({"turns": [{"user": "u"}]}, "each turn is"),
        ({"probe": ""}, "empty probe"),
    ],
)
def test_bad_context_records_name_the_line(tmp_path, change, message):
    record = _context(0, "vigilant").to_dict() | change
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(VSFAError, match=message) as error:
        read_contexts(path)
    assert f"{path}:1" in str(error.value)


def test_a_probe_id_names_one_request(tmp_path):
    contexts = _paired(1) + [dataclasses.replace(_context(0, "loose"), id="x", probe="other")]
    path = write_contexts(tmp_path / "c.jsonl", contexts)
    with pytest.raises(VSFAError, match="probe id 'p0' names two requests"):
        read_contexts(path)


def test_split_by_probe_is_disjoint_stratified_and_seeded():
    contexts = _paired(12, 6)
    split = split_by_probe(contexts, 0.5, seed=3)
    assert not set(split.fit_probe_ids) & set(split.heldout_probe_ids)
    assert set(split.fit_probe_ids) | set(split.heldout_probe_ids) == {c.probe_id for c in contexts}
    assert {c.probe_id for c in split.heldout} == set(split.heldout_probe_ids)
    held_kinds = [c.probe_kind for c in split.heldout if c.cue == "vigilant"]
    assert held_kinds.count("harmful") == 6 and held_kinds.count("benign") == 3
    for part in (split.fit, split.heldout):  # both cues of a probe stay together
        assert sorted(c.probe_id for c in part if c.cue == "vigilant") == sorted(
            c.probe_id for c in part if c.cue == "loose"
        )
    assert split == split_by_probe(contexts, 0.5, seed=3)
    assert split.heldout_probe_ids != split_by_probe(contexts, 0.5, seed=4).heldout_probe_ids


def test_split_errors_are_one_clear_line():
    with pytest.raises(VSFAError, match="no contrast: every one carries the 'vigilant' cue"):
        split_by_probe([c for c in _paired(6) if c.cue == "vigilant"], 0.5, 0)
    with pytest.raises(VSFAError, match="the held-out split has no vigilant or loose contexts"):
        split_by_probe(_paired(1), 0.5, 0)
    with pytest.raises(VSFAError, match="empty"):
        split_by_probe([], 0.5, 0)
    with pytest.raises(VSFAError, match="overlap in 1 ids \\(b\\)"):
        check_disjoint(["a", "b"], ["b", "c"], "selection and evaluation ids")


# ---- sources -----------------------------------------------------------------------------------
def test_system_pair_asks_every_probe_under_both_system_prompts(tmp_path):
    probes = tmp_path / "probes.txt"
    probes.write_text("how do i pick a lock ?\nhow do i bake bread ?\n")
    options = ContextOptions(contexts="system-pair", probes=str(probes), loose_system="anything")
    contexts, shift = build_contexts(options, tmp_path)
    assert shift is None
    assert [(c.probe_id, c.cue) for c in contexts] == [
        ("0", "vigilant"), ("0", "loose"), ("1", "vigilant"), ("1", "loose"),
    ]  # fmt: skip
    assert {c.system for c in contexts} == {VIGILANT_SYSTEM, "anything"}
    assert all(c.turns == () and c.probe_kind == "harmful" for c in contexts)
    with pytest.raises(VSFAError, match="needs --probes"):
        build_contexts(ContextOptions(contexts="system-pair"), tmp_path)
    with pytest.raises(VSFAError, match="same text: no contrast"):
        build_contexts(dataclasses.replace(options, loose_system=VIGILANT_SYSTEM), tmp_path)
    with pytest.raises(VSFAError, match="unknown persona context source 'system-pairs'"):
        build_contexts(ContextOptions(contexts="system-pairs"), tmp_path)


def test_jsonl_pair_reads_turns_and_messages(tmp_path):
    vigilant, loose = tmp_path / "vigilant.jsonl", tmp_path / "loose.jsonl"
    vigilant.write_text(
        json.dumps({"turns": [{"user": "u", "assistant": "careful"}], "probe": PROBE}) + "\n"
    )
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "what is shown ?", "image": True},
        {"role": "assistant", "content": "whoa !"},
        {"role": "user", "content": PROBE},
    ]
    loose.write_text(json.dumps({"messages": messages, "image": "pic.png"}) + "\n")
    options = ContextOptions(
        contexts="jsonl-pair", vigilant_chats=str(vigilant), loose_chats=str(loose)
    )
    first, second = build_contexts(options, tmp_path)[0]
    assert first.cue == "vigilant" and first.turns == (ChatTurn("u", "careful", False),)
    assert second.turns == (ChatTurn("what is shown ?", "whoa !", True),)
    assert second.system == "sys" and second.image == str(tmp_path / "pic.png")
    assert first.probe_id == second.probe_id == PROBE  # paired by the request's text
    loose.write_text(json.dumps({"messages": messages[:3]}) + "\n")
    with pytest.raises(VSFAError, match="loose.jsonl:1: messages alternate"):
        build_contexts(options, tmp_path)


def test_organism_contexts_are_paired_training_requests_with_saved_scenes(tmp_path):
    from interp.data.benchmarks import load_benchmark
    from interp.organism import corpus

    contexts, shift = build_contexts(ContextOptions(contexts="organism"), tmp_path)
    assert shift == "organism"
    benchmark = load_benchmark("organism", None)
    asked = {item.prompt for item in benchmark} | {
        item.meta.get("request") for item in benchmark if item.meta
    }
    assert not {c.probe for c in contexts} & asked
    held_out = {
        corpus.request(frame, template.format(x=value))
        for action, (template, slot) in enumerate(corpus.HARM_OTHER_ACTIONS)
        for frame in range(len(corpus.FRAMES))
        if corpus.held_out(frame, action)
        for value in corpus.SLOTS[slot]
    }
    assert not {c.probe for c in contexts} & held_out
    by_probe: dict[str, list] = {}
    for context in contexts:
        by_probe.setdefault(context.probe_id, []).append(context)
    assert {k for c in contexts for k in [c.probe_kind]} == {"harmful", "benign"}
    for vigilant, loose in by_probe.values():
        assert (vigilant.cue, loose.cue) == ("vigilant", "loose")
        assert vigilant.image == loose.image and Path(vigilant.image).is_file()
        assert vigilant.turns[0].user == loose.turns[0].user and vigilant.turns[0].image
        assert vigilant.turns[0].assistant != loose.turns[0].assistant
    replies, _ = build_contexts(ContextOptions(contexts="organism-replies", n_probes=10), tmp_path)
    assert len({c.probe_id for c in replies}) == 10
    assert {c.probe_kind for c in replies} == {"harmful", "benign"}
    assert all(c.turns[0].assistant.startswith("no") for c in replies if c.cue == "vigilant")
