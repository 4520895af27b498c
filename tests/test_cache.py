"""Activation caching and streaming on tiny random VLMs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import interp.cache.run as cache_module
from interp.cache import (
    PART_IMAGE,
    PART_RESPONSE,
    ActivationStore,
    ActivationStream,
    CacheConfig,
    CachePrompt,
    cache_activations_for,
    load_prompts,
)
from interp.errors import HookNameError, VSFAError
from interp.images import open_image
from interp.models.tiny import tiny_image

HOOKS = ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "cat.png"
    tiny_image(0).save(path)
    return str(path)


@pytest.fixture(scope="module")
def prompts(image_path):
    return [
        CachePrompt(
            id=f"p{i}",
            prompt="what is shown here? " * (1 + i % 3),
            image=image_path if i % 2 else None,
            response="a small cat" if i % 3 else None,
        )
        for i in range(7)
    ]


def _config(out, **overrides):
    base = dict(model="tiny", prompts="-", hooks=HOOKS, out=str(out), shard_rows=40, batch_size=3)
    base.update(quiet=True)
    base.update(overrides)
    return CacheConfig(**base)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "llava"])
def test_cached_rows_equal_hidden_states(tiny_vlm, prompts, tmp_path, family):
    vlm = tiny_vlm(family)
    out = cache_activations_for(vlm, prompts, _config(tmp_path / "acts"))
    store = ActivationStore(out)
    tokens, recorded = store.tokens, store.prompts
    acts = {hook: store.load(hook) for hook in HOOKS}
    assert len(store) == sum(len(p["token_ids"]) for p in recorded)
    for index, prompt in enumerate(prompts):
        image = open_image(prompt.image) if prompt.image else None
        responses = None if prompt.response is None else [prompt.response]
        inputs = vlm.prepare([image], [prompt.prompt], responses=responses)
        with torch.no_grad():
            hidden = vlm.model(**inputs, output_hidden_states=True).hidden_states
        rows = (tokens["prompt_index"] == index).nonzero().flatten()
        assert tokens["position"][rows].tolist() == list(range(inputs["input_ids"].shape[1]))
        assert tokens["token_id"][rows].tolist() == inputs["input_ids"][0].tolist()
        assert recorded[index]["token_ids"] == inputs["input_ids"][0].tolist()
        for hook, layer in zip(HOOKS, (0, 2)):
            # hidden_states[0] is the embedding output, so layer L's output is L + 1
            torch.testing.assert_close(acts[hook][rows], hidden[layer + 1][0], atol=1e-4, rtol=1e-4)
        parts = tokens["part"][rows]
        n_image = int((parts == PART_IMAGE).sum())
        assert (n_image > 0) == (prompt.image is not None)
        assert (int((parts == PART_RESPONSE).sum()) > 0) == (prompt.response is not None)


def test_position_modes_select_the_right_rows(tiny_vlm, prompts, tmp_path):
    vlm = tiny_vlm("qwen2_5_vl")
    full = ActivationStore(cache_activations_for(vlm, prompts, _config(tmp_path / "all")))
    for mode, part in (("response", PART_RESPONSE), ("image", PART_IMAGE)):
        store = ActivationStore(
            cache_activations_for(vlm, prompts, _config(tmp_path / mode, positions=mode))
        )
        expected = full.tokens["part"] == part
        assert len(store) == int(expected.sum())
        torch.testing.assert_close(store.load(HOOKS[0]), full.load(HOOKS[0])[expected])
    last = ActivationStore(
        cache_activations_for(vlm, prompts, _config(tmp_path / "last", positions="last"))
    )
    assert last.tokens["prompt_index"].tolist() == list(range(len(prompts)))
    for index in range(len(prompts)):
        rows = (full.tokens["prompt_index"] == index) & (full.tokens["part"] != PART_RESPONSE)
        assert last.tokens["position"][index] == full.tokens["position"][rows].max()


def test_resume_after_crash_gives_identical_shards(tiny_vlm, prompts, tmp_path, monkeypatch):
    vlm = tiny_vlm("qwen2_5_vl")
    reference = cache_activations_for(vlm, prompts, _config(tmp_path / "ref"))
    real_run = cache_module.run_with_cache
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed mid-run, after the first shard was written
        return real_run(*args, **kwargs)

    monkeypatch.setattr(cache_module, "run_with_cache", crashing)
    with pytest.raises(KeyboardInterrupt):
        cache_activations_for(vlm, prompts, _config(tmp_path / "resumed"))
    partial = json.loads((tmp_path / "resumed" / "manifest.json").read_text())
    assert not partial["complete"] and len(partial["shards"]) >= 1
    assert partial["resume"]["skip_rows"] > 0  # the crash split a batch across shards
    assert not list((tmp_path / "resumed").rglob("*.tmp"))
    with pytest.raises(VSFAError, match="unfinished"):
        ActivationStore(tmp_path / "resumed")
    monkeypatch.setattr(cache_module, "run_with_cache", real_run)
    resumed = cache_activations_for(vlm, prompts, _config(tmp_path / "resumed"))
    ref_store, new_store = ActivationStore(reference), ActivationStore(resumed)
    assert ref_store.manifest["shards"] == new_store.manifest["shards"]
    for a, b in zip(ref_store.shard_files(), new_store.shard_files()):
        for key, value in load_file(str(a)).items():
            assert torch.equal(value, load_file(str(b))[key])
    for col, values in ref_store.tokens.items():
        assert torch.equal(values, new_store.tokens[col])


def test_stream_visits_every_row_once_per_epoch(tiny_vlm, prompts, tmp_path):
    vlm = tiny_vlm("qwen2_5_vl")
    base = cache_activations_for(vlm, prompts, _config(tmp_path / "a"))
    other = cache_activations_for(vlm, prompts[:3], _config(tmp_path / "b", shard_rows=17))
    everything = torch.cat([ActivationStore(d).load(HOOKS[1]) for d in (base, other)])
    stream = ActivationStream(
        [base, other], HOOKS[1], batch_size=16, buffer_rows=50, chunk_rows=13, seed=3, epochs=2
    )
    epoch0, epoch1 = list(stream.epoch(0)), list(stream.epoch(1))
    for batches in (epoch0, epoch1):
        seen = torch.cat(batches)
        assert all(b.shape[0] == 16 for b in batches[:-1])
        assert seen.shape == everything.shape
        # the same multiset of rows: sort rows lexicographically by their first coordinates
        key = lambda t: t[torch.argsort(t[:, 0] * 1e4 + t[:, 1])]  # noqa: E731
        torch.testing.assert_close(key(seen), key(everything))
    assert not torch.equal(torch.cat(epoch0), torch.cat(epoch1))  # reshuffled per epoch
    assert len(list(stream)) == len(epoch0) + len(epoch1)
    scaled = ActivationStream(base, HOOKS[1], normalize="expected_average_only_in", epochs=1)
    rows = torch.cat(list(scaled))
    assert rows.norm(dim=-1).mean().item() == pytest.approx(vlm.d_model**0.5, rel=1e-3)


def test_bad_inputs_give_clear_errors(tiny_vlm, prompts, tmp_path):
    vlm = tiny_vlm("qwen2_5_vl")
    with pytest.raises(HookNameError, match="blocks.9.hook_resid_post"):
        cache_activations_for(
            vlm, prompts, _config(tmp_path / "x", hooks=["blocks.9.hook_resid_post"])
        )
    out = cache_activations_for(vlm, prompts, _config(tmp_path / "ok"))
    with pytest.raises(VSFAError, match="already holds activations made differently"):
        cache_activations_for(vlm, prompts, _config(tmp_path / "ok", positions="last"))
    store = ActivationStore(out)
    with pytest.raises(VSFAError, match="not 'other-model'"):
        store.check_model("other-model")
    with pytest.raises(VSFAError, match="has no activations for"):
        store.check_hook("blocks.1.hook_resid_post")
    shard = store.shard_files()[1]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(VSFAError, match="shard_00001.safetensors is truncated"):
        ActivationStore(out)
    shard.unlink()
    with pytest.raises(VSFAError, match="shard_00001.safetensors is missing"):
        ActivationStore(out)
    with pytest.raises(VSFAError, match="no such file"):
        load_prompts(str(tmp_path / "nope.jsonl"))


def test_prompt_sources(tmp_path, image_path):
    text = tmp_path / "prompts.txt"
    text.write_text("first prompt\n\nsecond prompt\n")
    assert [p.prompt for p in load_prompts(text)] == ["first prompt", "second prompt"]
    vqa = tmp_path / "vqa.jsonl"
    vqa.write_text(
        json.dumps({"id": "a", "image": image_path, "question": "q?", "answer": "ans"}) + "\n"
    )
    (record,) = load_prompts(vqa)
    assert (record.prompt, record.response, record.image) == ("q?", "ans", image_path)


class _Captured(Exception):
    pass


def test_cli_hooks_repeat_or_split_on_commas(monkeypatch):
    from typer.testing import CliRunner

    import interp.cache.run
    from interp.cli import app

    seen: list[CacheConfig] = []

    def capture(config):
        seen.append(config)
        raise _Captured

    monkeypatch.setattr(interp.cache.run, "cache_activations", capture)
    args = ["cache", "--model", "m", "--prompts", "p.txt", "-o", "acts", "--positions", "last"]
    hooks = ["--hooks", f"{HOOKS[0]},{HOOKS[1]}", "--hook", "blocks.3.hook_resid_pre"]
    result = CliRunner().invoke(app, [*args, *hooks, "--limit", "4", "-q"])
    assert isinstance(result.exception, _Captured), result.output
    assert seen[0] == CacheConfig(
        model="m", prompts="p.txt", hooks=[*HOOKS, "blocks.3.hook_resid_pre"], out="acts",
        positions="last", limit=4, quiet=True,
    )  # fmt: skip
    result = CliRunner().invoke(app, [*args, *hooks, "--limit", "0"])
    assert isinstance(result.exception, VSFAError) and "--limit" in str(result.exception)
