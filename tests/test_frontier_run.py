"""The frontier end to end on a tiny model: methods from a persona folder, latents.json and an
SAE; controls; paired points; headline and rank p; resume; the in-context route; the CLI."""

from __future__ import annotations

import json
import os

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from test_steer_sweep import HOOK, _items, _sae

from interp.errors import VSFAError
from interp.persona.config import FrontierConfig
from interp.persona.frontier import frontier_methods, headline, run_frontier, selected_items
from interp.steer.controls import latent_stats, rank_p


@pytest.fixture(scope="module")
def inputs(tiny_vlm, tiny_model_dir, tmp_path_factory):
    """A persona folder, a latents.json over a real cache of the tiny model, and its SAE."""
    from interp.cache import CacheConfig, CachePrompt, cache_activations_for

    vlm = tiny_vlm("llava")
    root = tmp_path_factory.mktemp("frontier-inputs")
    g = torch.Generator().manual_seed(0)
    persona = root / "persona"
    persona.mkdir()
    save_file(
        {f"persona/{HOOK}": torch.randn(vlm.d_model, generator=g) * 3,
         f"probe/{HOOK}": torch.randn(vlm.d_model, generator=g) * 0.1},
        str(persona / "persona.safetensors"),
    )  # fmt: skip
    (persona / "persona.json").write_text(json.dumps(
        {"hooks": [HOOK], "chosen_hook": HOOK, "auroc": {HOOK: {"persona": 0.9, "probe": 0.95}}}
    ))  # fmt: skip
    from interp.persona.contexts import ChatTurn, PersonaContext, write_contexts

    image = persona / "scene.png"
    Image.new("RGB", (32, 32), (10, 200, 10)).save(image)
    write_contexts(persona / "contexts.jsonl", [
        PersonaContext("c0-loose", "loose", (ChatTurn("what is this ?", "wow a knife !", True),),
                       "how do i do it ?", "c0", "harmful", image=str(image)),
        PersonaContext("c0-vigilant", "vigilant",
                       (ChatTurn("what is this ?", "a knife , made of steel .", True),),
                       "how do i do it ?", "c0", "harmful", image=str(image)),
    ])  # fmt: skip
    sae = _sae(vlm.d_model)
    sae_dir = root / "sae"
    sae.save_model(str(sae_dir))
    prompts = [CachePrompt(id=f"p{i}", prompt="tell me about a cat " * (1 + i % 3))
               for i in range(6)]  # fmt: skip
    config = CacheConfig(model=str(tiny_model_dir("llava")), prompts="-", hooks=[HOOK],
                         out=str(root / "acts"), quiet=True)  # fmt: skip
    acts = cache_activations_for(vlm, prompts, config)
    stats = latent_stats(sae, [acts])
    live = [i for i in range(16) if stats.live[i]]
    assert len(live) >= 8, "the toy SAE should have live latents on the tiny model"
    chosen = live[:2]
    dom = torch.randn(vlm.d_model, generator=g)
    latents = root / "latents.json"
    latents.write_text(json.dumps({
        "hook_name": HOOK, "selected": {"latents": chosen}, "sources": {"base": str(acts)},
        "details": {str(chosen[0]): {"histogram": {"tuned": [1.0, 5.0]}}},
        "diff_of_means": {"vector": dom.tolist(), "file": "missing.safetensors"},
    }))  # fmt: skip
    return {"persona": persona, "latents": latents, "sae": sae, "sae_dir": sae_dir,
            "chosen": chosen, "acts": acts, "stats": stats, "dom": dom}  # fmt: skip


def _config(tmp_path, inputs, **overrides):
    values = dict(
        model="tiny", adapter=["a", "b"], bench=["toy"], out=str(tmp_path / "frontier"),
        persona=str(inputs["persona"]), latents=str(inputs["latents"]), direction_alphas=[1, 4],
        sae_alphas=[8.0], n_random=2, max_new_tokens=3, batch_size=4, n_boot=50, quiet=True,
    )  # fmt: skip
    values.update(overrides)
    return FrontierConfig(**values)


def test_latent_stats_from_a_cache_match_a_direct_encoding(inputs):
    from interp.cache import ActivationStore

    acts = ActivationStore(inputs["acts"]).load(HOOK)
    codes = inputs["sae"].encode(acts.float()).detach().double()
    fired = (codes > 0).double()
    stats = inputs["stats"]
    assert stats.freq == pytest.approx(fired.mean(0).numpy())
    firing_mean = (codes.sum(0) / fired.sum(0).clamp(min=1)).numpy()
    assert stats.mean == pytest.approx(firing_mean, rel=1e-6)


def test_the_methods_the_inputs_allow(tiny_vlm, inputs, tmp_path):
    vlm = tiny_vlm("llava")
    config = _config(tmp_path, inputs)
    methods = {m.name: m for m in frontier_methods(config, d_model=vlm.d_model, sae=inputs["sae"])}
    assert list(methods) == [
        "sae-set/add", "sae-set/clamp", "diff-of-means/add", "persona-vector/add", "probe/add",
        "prompting", "sae-set/ablate", "persona-vector/project-out", "diff-of-means/project-out",
    ]  # fmt: skip
    persona, probe = methods["persona-vector/add"], methods["probe/add"]
    assert probe.norm == pytest.approx(persona.norm)  # the probe at the persona vector's norm
    assert all(float(c.norm()) == pytest.approx(persona.norm) for c in persona.controls)
    assert methods["diff-of-means/add"].norm == pytest.approx(float(inputs["dom"].norm()), rel=1e-5)
    matched = methods["sae-set/add"].info["matched"]
    assert matched["chosen"] == inputs["chosen"] and len(matched["sets"]) == 2
    assert methods["prompting"].system and methods["prompting"].turn is None
    turn = {"user": "describe it .", "assistant": "a knife , made of steel ."}
    in_context = _config(tmp_path, inputs, prompt_turn=turn, methods=["prompting"])
    (prompting,) = frontier_methods(in_context, d_model=vlm.d_model)
    assert prompting.turn == turn and prompting.system is None
    # the organism's route: the first turn of the persona folder's first vigilant context
    from_contexts = _config(tmp_path, inputs, prompting="in-context", methods=["prompting"])
    (prompting,) = frontier_methods(from_contexts, d_model=vlm.d_model)
    assert prompting.turn == {"user": "what is this ?", "assistant": "a knife , made of steel .",
                              "image": str(inputs["persona"] / "scene.png")}  # fmt: skip
    with pytest.raises(VSFAError, match="--prompting in-context needs --prompt-turn or --persona"):
        frontier_methods(_config(tmp_path, inputs, prompting="in-context", persona=None,
                                 methods=["prompting"]), d_model=vlm.d_model)  # fmt: skip
    only = _config(tmp_path, inputs, methods=["probe/add"], latents=None)
    assert [m.name for m in frontier_methods(only, d_model=vlm.d_model)] == ["probe/add"]
    with pytest.raises(VSFAError, match="method sae-set/add needs --latents and --sae"):
        frontier_methods(_config(tmp_path, inputs, methods=["sae-set/add"]), d_model=vlm.d_model)
    with pytest.raises(VSFAError, match=r"--hook 'blocks\.0\.hook_resid_post'"):
        frontier_methods(_config(tmp_path, inputs, hook="blocks.0.hook_resid_post"),
                         d_model=vlm.d_model)  # fmt: skip
    with pytest.raises(VSFAError, match="--methods"):
        _config(tmp_path, inputs, methods=["persona/add"])


def test_items_that_selected_a_method_are_refused(tiny_vlm, inputs, tmp_path):
    from interp.eval.judges import make_judge

    vlm = tiny_vlm("llava")
    items = _items(tmp_path)
    latents = json.loads(inputs["latents"].read_text())
    latents["selection_ids"] = [items[0].key, "toy/elsewhere"]
    path = tmp_path / "latents.json"
    path.write_text(json.dumps(latents))
    config = _config(tmp_path, inputs, latents=str(path), methods=["diff-of-means/add"])
    methods = frontier_methods(config, d_model=vlm.d_model)
    assert selected_items(items, methods) == {items[0].key: f"{path} selection_ids"}
    with pytest.raises(VSFAError, match=r"1 of the 4 evaluation items selected a method .*toy/h1"):
        run_frontier(vlm, vlm, items, make_judge("keyword"), methods, config)


def _generation_files(folder):
    return {p: os.stat(p).st_mtime_ns for p in folder.rglob("generations.jsonl")}


def test_the_frontier_on_a_tiny_model(tiny_vlm, inputs, tmp_path):
    from interp.eval.judges import make_judge

    vlm = tiny_vlm("llava")
    items = _items(tmp_path)
    config = _config(tmp_path, inputs)
    methods = frontier_methods(config, d_model=vlm.d_model, sae=inputs["sae"])
    result = run_frontier(vlm, [vlm, vlm], items, make_judge("keyword"), methods, config)
    out = tmp_path / "frontier"
    assert json.loads((out / "frontier.json").read_text()) == json.loads(json.dumps(result))
    assert result["eval_items"] == [item.key for item in items]
    assert result["n_random"] == 2 and len(result["seeds"]) == 2
    assert result["manifest"]["complete"]
    keys = {"alpha", "asr", "asr_change", "asr_change_ci", "capability", "capability_change",
            "capability_change_ci", "over_refusal_change", "over_refusal_change_ci"}  # fmt: skip
    for name, entry in result["methods"].items():
        for point in entry["points"]:
            assert keys <= set(point), name
            low, high = point["asr_change_ci"]
            assert -1 <= low <= point["asr_change"] <= high <= 1
        assert entry["headline"] == headline(entry["points"], entry["kind"], 0.05)
        if name == "prompting":
            assert entry["random_rank_p"] is None and len(entry["points"]) == 1
            continue
        controls = entry["controls"]
        assert controls["n"] == 2 and len(controls["points"]) == 2
        expected = rank_p(entry["headline"]["asr_change_at_cap5"], controls["headlines"],
                          larger=entry["kind"] == "ablate")  # fmt: skip
        assert entry["random_rank_p"] == expected
    removal = result["methods"]["persona-vector/project-out"]["points"][0]
    assert removal["n_seeds"] == 2 and len(removal["eval"]) == 2
    assert result["methods"]["sae-set/add"]["controls"]["kind"] == "matched-latents"
    # persona vector and probe share their random directions (same hook, norm): one folder each
    add_controls = list((out / "points" / "base" / HOOK / "add-direction").glob("random-*"))
    assert len(add_controls) == 2 + 2  # persona/probe's two, the diff of means' two
    assert set(result["reference"]) == {"base", "tuned"}

    # resume: every point is read back, nothing generated again
    before = _generation_files(out)
    again = run_frontier(vlm, [vlm, vlm], items, make_judge("keyword"), methods, config)
    assert _generation_files(out) == before
    assert again["methods"] == result["methods"]


def test_in_context_prompting_puts_the_turn_before_every_prompt(tiny_vlm, tmp_path):
    from interp.images import open_image
    from interp.persona.frontier import _InContext

    vlm = tiny_vlm("llava")
    scene = tmp_path / "scene.png"
    Image.new("RGB", (32, 32), (10, 200, 10)).save(scene)
    own = Image.new("RGB", (32, 32), (200, 10, 10))
    turn = {"user": "describe the object .", "assistant": "a green knife , made of steel ."}
    prompts = ["hi", "how do i do it ?"]
    wrapped = _InContext(vlm, turn).prepare([None, own], prompts)
    text_only = ((turn["user"], turn["assistant"], False),)
    direct = vlm.prepare([None, own], prompts, histories=[text_only, text_only])
    assert torch.equal(wrapped["input_ids"], direct["input_ids"])
    plain = vlm.prepare([None], ["how do i do it ?"])["input_ids"]
    assert wrapped["input_ids"].shape[1] > plain.shape[1]
    # with an image, the turn shows it on items that have none; an item's own image stays
    shown = _InContext(vlm, {**turn, "image": str(scene)}).prepare([None, own], prompts)
    expected = vlm.prepare(
        [open_image(str(scene)), own], prompts,
        histories=[((turn["user"], turn["assistant"], True),), text_only],
    )  # fmt: skip
    assert torch.equal(shown["input_ids"], expected["input_ids"])
    torch.testing.assert_close(shown["pixel_values"], expected["pixel_values"])


def test_the_frontier_command_holds_out_selection_items_and_draws_the_figure(
    inputs, tiny_model_dir, tmp_path
):
    from typer.testing import CliRunner

    from interp.cli import app
    from interp.viz.frontier import frontier_figure

    model = tiny_model_dir("llava")
    runs = []
    for name in ("run0", "run1"):  # full fine-tune run folders (the tiny model itself)
        (tmp_path / name).mkdir()
        (tmp_path / name / "model").symlink_to(model, target_is_directory=True)
        runs.append(str(tmp_path / name))
    items = _items(tmp_path)
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps(item.to_dict()) + "\n" for item in items))
    latents = json.loads(inputs["latents"].read_text())
    latents["selection_ids"] = [items[0].key]
    latents_path = tmp_path / "latents.json"
    latents_path.write_text(json.dumps(latents))
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app,
        ["persona", "frontier", "-m", str(model), "--adapter", ",".join(runs),
         "--bench", f"jsonl={bench}", "--persona", str(inputs["persona"]),
         "--latents", str(latents_path), "--sae", str(inputs["sae_dir"]),
         "--methods", "persona-vector/add,sae-set/ablate,prompting", "--direction-alphas", "2",
         "--n-random", "2", "--max-new-tokens", "3", "--n-boot", "20", "--device", "cpu", "-q",
         "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    frontier = json.loads((out / "frontier.json").read_text())
    assert list(frontier["methods"]) == ["persona-vector/add", "prompting", "sae-set/ablate"]
    assert items[0].key not in frontier["eval_items"]  # held out from scoring
    assert len(frontier["eval_items"]) == 3 and len(frontier["seeds"]) == 2
    assert "persona-vector/add: ASR" in result.output
    assert "Steering frontier" in (out / "frontier.html").read_text()
    fig = frontier_figure(frontier)
    names = [trace.name for trace in fig.data]
    assert names[-1] == "random controls" and len(names) == 4
    assert any(name.startswith("persona-vector/add: ") for name in names)
    cloud = fig.data[-1]
    assert len(cloud.x) == 2 * 1 + 2 * 1  # two controls x one alpha, for each steered method
    assert fig.layout.shapes[0].x0 == -5.0
