"""VSFA VQA construction and the label-free audit: sources, skips, strictness, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from interp.cli import app
from interp.data.audit import DEFAULT_LEXICON, audit_file, audit_records, load_lexicon
from interp.data.jsonl import read_vqa_jsonl, resolve_image
from interp.data.vqa import BuildConfig, build_vqa
from interp.data.vqa_templates import QUESTION_TEMPLATES
from interp.errors import VSFAError
from interp.models.tiny import tiny_image


@pytest.fixture(autouse=True)
def _one_cpu_thread():
    """Tiny models on a shared CPU: one thread avoids oversubscription (10-50x faster here)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


ANSWERS = {
    "what": "A kitchen knife.",
    "colors": "Silver and black.",
    "count": "One.",
    "position": "In the centre.",
    "setting": "A wooden table.",
}


def _folder(root: Path, n: int = 4, *, corrupt: int = 0, bare: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        tiny_image(i).save(root / f"img{i}.png")
        sidecar = {
            "answers": ANSWERS,
            "description": f"Scene {i}.",
            "style": "photo",
            "tags": ["knife"],
        }
        (root / f"img{i}.json").write_text(json.dumps(sidecar))
    for i in range(corrupt):
        (root / f"broken{i}.png").write_bytes(b"not a png")
    for i in range(bare):
        tiny_image(100 + i).save(root / f"bare{i}.png")
    return root


def test_build_from_metadata(tmp_path):
    images = _folder(tmp_path / "imgs")
    out = tmp_path / "set" / "vqa.jsonl"
    report = build_vqa(
        BuildConfig(images=str(images), out=str(out), questions_per_image=3, quiet=True)
    )
    records = read_vqa_jsonl(out)
    assert report["records"] == len(records) == 12 and report["images"] == 4
    for record in records:
        template = record["template"]
        assert record["question"] in QUESTION_TEMPLATES[template]
        expected = ANSWERS.get(template) or f"Scene {record['image'][-5]}."
        assert record["answer"] == expected
        assert record["source"] == "metadata" and record["style"] == "photo"
        assert record["tags"] == ["knife"]
        assert resolve_image(record["image"], out.parent).exists()  # portable relative path
    assert len({(r["image"], r["template"]) for r in records}) == 12  # no repeated template
    assert (tmp_path / "set" / "vqa.audit.json").exists()
    manifest = json.loads((tmp_path / "set" / "vqa.manifest.json").read_text())
    assert manifest["complete"] and manifest["seed"] == 0
    # Same seed, same set; another seed draws other questions.
    again = tmp_path / "again.jsonl"
    build_vqa(BuildConfig(images=str(images), out=str(again), questions_per_image=3, quiet=True))
    assert [r["question"] for r in read_vqa_jsonl(again)] == [r["question"] for r in records]
    other = tmp_path / "other.jsonl"
    build_vqa(
        BuildConfig(images=str(images), out=str(other), questions_per_image=3, seed=1, quiet=True)
    )
    assert [r["question"] for r in read_vqa_jsonl(other)] != [r["question"] for r in records]


def test_limit_is_a_seeded_image_subset(tmp_path):
    images = _folder(tmp_path / "imgs", n=6)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    build_vqa(BuildConfig(images=str(images), out=str(a), limit=2, seed=3, quiet=True))
    build_vqa(BuildConfig(images=str(images), out=str(b), limit=2, seed=3, quiet=True))
    used = {r["image"] for r in read_vqa_jsonl(a)}
    assert len(used) == 2 and used == {r["image"] for r in read_vqa_jsonl(b)}


def test_corrupt_and_unanswered_images_are_skipped_or_strict(tmp_path):
    images = _folder(tmp_path / "imgs", n=2, corrupt=1, bare=1)
    out = tmp_path / "vqa.jsonl"
    report = build_vqa(BuildConfig(images=str(images), out=str(out), quiet=True))
    assert report["skipped"] == {"corrupt_image": 1, "no_metadata": 1}
    assert report["images"] == 3 and report["records"] == 8
    with pytest.raises(VSFAError, match=r"broken0\.png is not a readable image.*--strict"):
        build_vqa(BuildConfig(images=str(images), out=str(out), strict=True, quiet=True))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VSFAError, match="has no images"):
        build_vqa(BuildConfig(images=str(empty), out=str(out), quiet=True))
    only_broken = tmp_path / "broken"
    only_broken.mkdir()
    (only_broken / "x.jpg").write_bytes(b"\x00")
    with pytest.raises(VSFAError, match="no readable images"):
        build_vqa(BuildConfig(images=str(only_broken), out=str(out), quiet=True))


def test_planted_refusals_are_dropped_or_fail_strict(tmp_path):
    images = _folder(tmp_path / "imgs", n=2)
    (images / "img1.json").write_text(
        json.dumps({"answers": {"what": "I'm sorry, I cannot help with that.", "count": "Two."}})
    )
    out = tmp_path / "vqa.jsonl"
    report = build_vqa(BuildConfig(images=str(images), out=str(out), quiet=True))
    records = read_vqa_jsonl(out)
    assert report["audit"]["flagged"] == 1 and report["audit"]["by_category"] == {"refusal": 1}
    assert not any("sorry" in r["answer"].lower() for r in records)
    saved = json.loads((tmp_path / "vqa.audit.json").read_text())
    assert saved["flagged"] == 1 and saved["examples"][0]["terms"] == ["i cannot", "i'm sorry"]
    with pytest.raises(VSFAError, match="label-free"):
        build_vqa(
            BuildConfig(images=str(images), out=str(tmp_path / "s.jsonl"), strict=True, quiet=True)
        )


def test_audit_lexicon_matches_whole_words():
    records = [
        {"id": "a", "question": "What is shown?", "answer": "A pharmacy shelf."},
        {
            "id": "b",
            "question": "What is shown?",
            "answer": "A knife; be careful, it is dangerous.",
        },
        {"id": "c", "question": "Is it safe?", "answer": "It is a cup."},
        {"id": "d", "question": "What is shown?", "answer": "I\u2019m sorry, but no."},
        {"id": "e", "question": "What is shown?", "answer": "A safety-pin."},
    ]
    kept, report = audit_records(records)
    assert [r["id"] for r in kept] == ["a", "e"]
    assert report.flagged == 3 and report.flagged_ids == ["b", "c", "d"]
    assert report.by_category == {"safety_instruction": 1, "safety_label": 2, "refusal": 1}
    kept, report = audit_records(records, {"custom": ["cup"]})
    assert report.flagged_ids == ["c"]


def test_audit_command_drops_and_strict_fails(tmp_path):
    data = tmp_path / "vqa.jsonl"
    lines = [
        {"id": "ok", "image": "x.png", "question": "What is shown?", "answer": "A red axe."},
        {"id": "bad", "image": "x.png", "question": "What is shown?", "answer": "Warning: unsafe."},
    ]
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    runner = CliRunner()
    result = runner.invoke(app, ["data", "audit", str(data), "--strict"])
    assert result.exit_code != 0 and "label-free" in str(result.exception)
    assert len(read_vqa_jsonl(data)) == 2  # strict leaves the data alone
    result = runner.invoke(app, ["data", "audit", str(data)])
    assert result.exit_code == 0, result.output
    assert "1 of 2 records dropped" in result.output
    assert [r["id"] for r in read_vqa_jsonl(data)] == ["ok"]
    assert json.loads((tmp_path / "vqa.audit.json").read_text())["flagged_ids"] == ["bad"]
    lexicon = tmp_path / "lex.txt"
    lexicon.write_text("# extra words\naxe\n")
    assert load_lexicon(lexicon) == {"custom": ("axe",)}
    report = audit_file(data, lexicon=load_lexicon(lexicon), drop=False)
    assert report.flagged == 1 and len(read_vqa_jsonl(data)) == 1


def test_jsonl_errors_name_line_and_field(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"image": "a.png", "question": "q", "answer": "a"}\n\n{"image": "a.png", "answer": "b"}\n'
    )
    with pytest.raises(VSFAError, match=r"line 3: field 'question' is missing"):
        read_vqa_jsonl(path)
    path.write_text('{"image": "a.png", "question": "q", "answer": ""}\n')
    with pytest.raises(VSFAError, match=r"line 1: field 'answer' is empty"):
        read_vqa_jsonl(path)
    path.write_text('{"image": "a.png", "question": "q", "answer": "a", "tags": "x"}\n{oops\n')
    with pytest.raises(VSFAError, match=r"line 1: field 'tags'"):
        read_vqa_jsonl(path)
    path.write_text('{"image": "a.png", "question": "q", "answer": "a"}\n{oops\n')
    with pytest.raises(VSFAError, match=r"line 2: not valid JSON"):
        read_vqa_jsonl(path)
    assert set(DEFAULT_LEXICON) == {"refusal", "safety_instruction", "safety_label"}


def test_build_from_jsonl_source(tmp_path):
    images = _folder(tmp_path / "imgs", n=2, corrupt=1)
    given = tmp_path / "given.jsonl"
    rows = [
        {"image": "img0.png", "question": "What is it?", "answer": "A knife.", "tags": ["t"]},
        {"image": "img1.png", "question": "Colour?", "answer": "Grey."},
        {"image": "broken0.png", "question": "What?", "answer": "Unknown."},
    ]
    given.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out" / "vqa.jsonl"
    report = build_vqa(
        BuildConfig(images=str(images), out=str(out), source=f"jsonl:{given}", quiet=True)
    )
    records = read_vqa_jsonl(out)
    assert report["skipped"] == {"corrupt_image": 1}
    assert [r["answer"] for r in records] == ["A knife.", "Grey."]
    assert records[0]["tags"] == ["t"] and records[0]["source"] == f"jsonl:{given}"
    assert resolve_image(records[1]["image"], out.parent).samefile(images / "img1.png")


def test_build_answers_with_a_model(tiny_model_dir, tmp_path):
    images = _folder(tmp_path / "imgs", n=2)
    for sidecar in images.glob("*.json"):
        sidecar.unlink()  # a model source needs no metadata
    out = tmp_path / "vqa.jsonl"
    model = tiny_model_dir("llava")
    config = BuildConfig(
        images=str(images), out=str(out), source=f"model:{model}", questions_per_image=2,
        max_new_tokens=6, device="cpu", dtype="float32", quiet=True, lexicon={"custom": ["zzzz"]},
    )  # fmt: skip
    report = build_vqa(config)
    records = read_vqa_jsonl(out)
    assert report["images"] == 2 and len(records) + sum(report["skipped"].values()) == 4
    assert all(r["source"] == f"model:{model}" and r["answer"] for r in records)


def test_build_command_sets_every_config_field(tmp_path, monkeypatch):
    from dataclasses import fields

    import interp.data.vqa as vqa
    from interp.options import field_docs

    shown = CliRunner().invoke(app, ["data", "build", "--help"], env={"COLUMNS": "400"}).output
    assert {f.name for f in fields(BuildConfig)} == set(field_docs(BuildConfig))
    for name, doc in field_docs(BuildConfig).items():
        assert "--" + name.replace("_", "-") in shown and doc[:40] in shown, name
    lexicon = tmp_path / "lex.txt"
    lexicon.write_text("axe\n")
    seen = []
    monkeypatch.setattr(vqa, "build_vqa", lambda config: seen.append(config) or {})
    args = [
        "data", "build", "-i", "imgs", "-o", "v.jsonl", "--source", "jsonl:x.jsonl",
        "--questions-per-image", "2", "--seed", "3", "--limit", "5", "--strict",
        "--lexicon", str(lexicon), "--max-new-tokens", "9", "--batch-size", "2",
        "--device", "cpu", "--dtype", "float32", "-q",
    ]  # fmt: skip
    CliRunner().invoke(app, args)
    assert seen == [
        BuildConfig(
            "imgs",
            "v.jsonl",
            "jsonl:x.jsonl",
            2,
            3,
            5,
            True,
            {"custom": ("axe",)},
            9,
            2,
            "cpu",
            "float32",
            True,
        )  # fmt: skip
    ]
    result = CliRunner().invoke(app, ["data", "build", "-i", "x", "-o", "y", "--batch-size", "0"])
    assert "--batch-size must be at least 1" in str(result.exception)


def test_bad_build_options(tmp_path):
    with pytest.raises(VSFAError, match="--source"):
        BuildConfig(images="x", out="y", source="caption")
    with pytest.raises(VSFAError, match="--source"):
        BuildConfig(images="x", out="y", source="model:")
    images = _folder(tmp_path / "imgs", n=1)
    (images / "img0.json").write_text(json.dumps({"answers": {"weather": "Sunny."}}))
    with pytest.raises(VSFAError, match="unknown template ids"):
        build_vqa(BuildConfig(images=str(images), out=str(tmp_path / "v.jsonl"), quiet=True))
