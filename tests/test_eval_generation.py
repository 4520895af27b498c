"""Resumable generation, skipped images and the LLM judge on tiny random models."""

from __future__ import annotations

import contextlib
import json

import pytest
from PIL import Image

from interp.data.records import BenchmarkItem
from interp.errors import VSFAError
from interp.eval.generation import GenerationConfig, generate_responses, read_generations
from interp.eval.judges import LLMJudge, LLMJudgeConfig, get_judge
from interp.eval.run import ADASHIELD_S_PROMPT, evaluate, resolve_defense


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    out = []
    for index in range(6):
        image = None
        if index % 3 != 2:  # every third item is text-only
            image = folder / f"{index}.png"
            Image.new("RGB", (24, 24), (40 * index, 100, 200)).save(image)
        kind = "harmful" if index < 4 else "benign"
        out.append(BenchmarkItem("toy", str(index), f"c{index % 2}", image and str(image),
                                 f"q{index}", kind))  # fmt: skip
    return out


CONFIG = GenerationConfig(max_new_tokens=3, batch_size=2)


class CrashAfter:
    """A hook factory that counts the batches it wraps and raises in batch ``n`` when armed."""

    def __init__(self, n: int | None = None):
        self.n, self.entered = n, 0

    def __call__(self):
        self.entered += 1
        if self.n is not None and self.entered == self.n:
            raise KeyboardInterrupt("simulated Ctrl-C")
        return contextlib.nullcontext()


def test_resume_after_crash_gives_the_same_file(tiny_vlm, items, tmp_path):
    vlm = tiny_vlm("llava")
    whole = tmp_path / "whole" / "generations.jsonl"
    full_hook = CrashAfter()
    records = generate_responses(vlm, items, whole, CONFIG, hooks=[full_hook], quiet=True)
    assert full_hook.entered == 3  # one entry per batch of 2
    assert [r["key"] for r in records] == [i.key for i in items]
    assert all(isinstance(r["response"], str) and not r["skipped"] for r in records)

    broken = tmp_path / "broken" / "generations.jsonl"
    with pytest.raises(KeyboardInterrupt):
        generate_responses(vlm, items, broken, CONFIG, hooks=[CrashAfter(2)], quiet=True)
    assert len(read_generations(broken)) == 2  # the first batch survived, nothing else
    with open(broken, "a") as handle:  # a torn line, as if killed mid-write
        handle.write('{"key": "toy/2", "samp')
    resumed_hook = CrashAfter()
    generate_responses(vlm, items, broken, CONFIG, hooks=[resumed_hook], quiet=True)
    assert resumed_hook.entered == 2  # only the two missing batches ran
    assert broken.read_bytes() == whole.read_bytes()
    # a finished file resumes to itself without generating
    again = CrashAfter()
    generate_responses(vlm, items, broken, CONFIG, hooks=[again], quiet=True)
    assert again.entered == 0 and broken.read_bytes() == whole.read_bytes()


def test_resume_refuses_a_different_setup(tiny_vlm, items, tmp_path):
    vlm = tiny_vlm("llava")
    out = tmp_path / "generations.jsonl"
    generate_responses(vlm, items[:2], out, CONFIG, quiet=True)
    other = GenerationConfig(max_new_tokens=5, batch_size=2)
    with pytest.raises(VSFAError, match=r"different setup \(changed: generation\)"):
        generate_responses(vlm, items[:2], out, other, quiet=True)
    with pytest.raises(VSFAError, match="different setup"):
        generate_responses(vlm, items[:2], out, CONFIG, suffix="be safe", quiet=True)
    # a smaller batch is only a speed change
    generate_responses(
        vlm, items[:2], out, GenerationConfig(max_new_tokens=3, batch_size=1), quiet=True
    )
    records = generate_responses(vlm, items[:2], out, other, quiet=True, overwrite=True)
    assert len(read_generations(out)) == 2 and len(records) == 2


def test_sampling_is_seeded(tiny_vlm, items, tmp_path):
    vlm = tiny_vlm("llava")
    config = GenerationConfig(max_new_tokens=4, batch_size=4, do_sample=True, seed=7,
                              samples_per_item=2)  # fmt: skip
    first = generate_responses(vlm, items[:2], tmp_path / "a.jsonl", config, quiet=True)
    second = generate_responses(vlm, items[:2], tmp_path / "b.jsonl", config, quiet=True)
    assert [(r["key"], r["sample"]) for r in first] == [
        ("toy/0", 0), ("toy/0", 1), ("toy/1", 0), ("toy/1", 1),
    ]  # fmt: skip
    assert [r["response"] for r in first] == [r["response"] for r in second]
    with pytest.raises(VSFAError, match="needs sampling"):
        GenerationConfig(samples_per_item=2).validate()


def test_corrupt_image_is_skipped_and_counted(tiny_vlm, items, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    broken = BenchmarkItem("toy", "bad", "c0", str(bad), "q", "harmful")
    run_items = [items[0], broken, items[1], items[4]]
    metrics = evaluate(
        tiny_vlm("llava"), run_items, tmp_path / "run", judge=get_judge("keyword"),
        generation=CONFIG, defense="adashield", n_boot=50, quiet=True,
    )  # fmt: skip
    judged = [json.loads(line) for line in (tmp_path / "run" / "judged.jsonl").open()]
    skipped = [r for r in judged if r["skipped"]]
    assert len(skipped) == 1 and skipped[0]["key"] == "toy/bad"
    assert "bad.png is not a readable image" in skipped[0]["reason"]
    assert skipped[0]["verdict"] is None
    assert all(r["prompt"].endswith(ADASHIELD_S_PROMPT) for r in judged)
    toy = metrics["benchmarks"]["toy"]
    assert toy["skipped"] == 1 and toy["asr"]["n"] == 2 and toy["over_refusal"]["n"] == 1
    assert metrics["summary"]["skipped"] == 1
    assert metrics["defense"] == "adashield" and metrics["label"]["method"] == "adashield"
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["config"]["defense_text"] == ADASHIELD_S_PROMPT
    assert manifest["config"]["judge"]["name"] == "keyword"


def test_defense_resolution(tmp_path):
    assert resolve_defense(None) == (None, None)
    assert resolve_defense("adashield") == ("adashield", ADASHIELD_S_PROMPT)
    custom = tmp_path / "careful.txt"
    custom.write_text("Think first.\n")
    assert resolve_defense(str(custom)) == ("careful", "Think first.")
    with pytest.raises(VSFAError, match="unknown --defense 'shield'"):
        resolve_defense("shield")


def test_llm_judge_with_a_tiny_vlm(tiny_model_dir, items):
    judge = LLMJudge(LLMJudgeConfig(path=str(tiny_model_dir("llava")), max_new_tokens=4,
                                    device="cpu", dtype="float32"))  # fmt: skip
    assert judge.kind == "vlm" and judge.config()["template"].count("{response}") == 1
    rendered = judge.render(items[0], "the answer")
    assert "[REQUEST]\nq0" in rendered and "[RESPONSE]\nthe answer" in rendered
    assert "counts as safe" not in rendered
    legal = BenchmarkItem("mmsafety", "x", "10-Legal_Opinion", None, "q", "harmful",
                          meta={"disclaimer_is_safe": True})  # fmt: skip
    assert "recommends a qualified professional counts as safe" in judge.render(legal, "r")
    verdicts = judge.judge(items[:3], ["I cannot help.", "Sure: step 1", "ok"])
    assert len(verdicts) == 3
    for v, refused in zip(verdicts, [True, False, False]):
        # a random model writes no readable verdict: the keyword judge decides, labelled so
        if v.label == "unparsed":
            assert v.refused == refused


def test_llm_judge_with_a_tiny_text_model(tmp_path, items):
    from transformers import LlamaConfig, LlamaForCausalLM

    from interp.models.tiny import byte_level_tokenizer

    template = "{% for m in messages %}<u>{{ m['content'] }}</u>{% endfor %}<a>"
    tokenizer = byte_level_tokenizer(["<eos>", "<pad>", "<u>", "</u>", "<a>"], bos=None,
                                     eos="<eos>", pad="<pad>", chat_template=template)  # fmt: skip
    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         **ids)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path / "judge")
    tokenizer.save_pretrained(tmp_path / "judge")
    custom = tmp_path / "template.txt"
    custom.write_text("Is this safe? {response} ({category})")
    from interp.eval.judges import make_judge

    judge = make_judge(
        f"llm:{tmp_path / 'judge'}", template=custom, device="cpu", dtype="float32",
        max_new_tokens=4,
    )  # fmt: skip
    assert judge.kind == "text"
    assert judge.render(items[0], "fine") == "Is this safe? fine (c0)"
    outputs = judge.raw_outputs(items[:2], ["fine", "also fine"])
    assert len(outputs) == 2 and all(isinstance(o, str) for o in outputs)
    bad = tmp_path / "bad.txt"
    bad.write_text("{response} {nonsense}")
    with pytest.raises(VSFAError, match=r"uses \{nonsense\}"):
        make_judge(f"llm:{tmp_path / 'judge'}", template=bad, device="cpu").render(items[0], "x")


class PickyProcessorVLM:
    """The real tiny VLM, with a processor that rejects 7-pixel-wide images (as real processors
    reject some images PIL can open)."""

    def __init__(self, vlm):
        self._vlm = vlm

    def __getattr__(self, name):
        return getattr(self._vlm, name)

    def prepare(self, images, prompts, **kwargs):
        if any(image is not None and image.width == 7 for image in images):
            raise ValueError("unsupported image size")
        return self._vlm.prepare(images, prompts, **kwargs)


def test_image_rejected_by_the_processor_is_skipped(tiny_vlm, items, tmp_path):
    odd = tmp_path / "odd.png"
    Image.new("RGB", (7, 30)).save(odd)
    run_items = [items[0], BenchmarkItem("toy", "odd", "c0", str(odd), "q", "harmful"), items[2]]
    records = generate_responses(
        PickyProcessorVLM(tiny_vlm("llava")), run_items, tmp_path / "g.jsonl",
        GenerationConfig(max_new_tokens=2, batch_size=3), quiet=True,
    )  # fmt: skip
    assert [r["skipped"] for r in records] == [False, True, False]
    assert "processor rejected" in records[1]["reason"] and records[1]["response"] is None
    assert all(isinstance(records[i]["response"], str) for i in (0, 2))
