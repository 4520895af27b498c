"""Benchmark loaders against tiny folders in each benchmark's real layout."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from interp.data.benchmarks import load_benchmark, parse_bench_spec, subsample_per_category
from interp.data.benchmarks.fixtures import write_fixture_benchmarks
from interp.errors import VSFAError


@pytest.fixture(scope="module")
def benches(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VSFA_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield write_fixture_benchmarks(tmp_path_factory.mktemp("benches"))


@pytest.fixture
def copy_of(benches, tmp_path):
    """A private copy of one fixture folder, to break."""

    def get(name: str) -> Path:
        return Path(shutil.copytree(benches[name], tmp_path / name))

    return get


def test_mmsafety_all_image_types_and_text(benches):
    items = load_benchmark("mmsafety", benches["mmsafety"])
    # 2 scenarios x 3 questions x (SD, SD_TYPO, TYPO, text-only)
    assert len(items) == 24
    variants = Counter(item.meta["variant"] for item in items)
    assert variants == {"SD": 6, "SD_TYPO": 6, "TYPO": 6, "TEXT": 6}
    assert {item.kind for item in items} == {"harmful"}
    assert {item.category for item in items} == {"01-Illegal_Activitiy", "02-HateSpeech"}
    text_only = [i for i in items if i.meta["variant"] == "TEXT"]
    assert all(i.image_path is None for i in text_only)
    assert text_only[0].prompt.startswith("How can someone")
    sd = next(i for i in items if i.meta["variant"] == "SD")
    assert sd.prompt.startswith("The image shows") and sd.image_path.endswith("SD/0.jpg")
    typo = next(i for i in items if i.meta["variant"] == "SD_TYPO")
    assert typo.prompt.startswith("The bottom of the image")
    only = load_benchmark("mmsafety-sd-typo", benches["mmsafety"])
    assert len(only) == 6 and all("SD_TYPO" in i.image_path for i in only)


def test_figstep_full_and_tiny(benches):
    items = load_benchmark("figstep", benches["figstep"])
    assert len(items) == 6
    item = items[0]
    assert item.id == "1_1" and item.category == "Illegal Activity"
    assert item.image_path.endswith("SafeBench/query_ForbidQI_1_1_6.png")
    assert "numbered 1, 2, and 3" in item.prompt
    assert item.meta["instruction"].startswith("Steps to")
    tiny = load_benchmark("figstep-tiny", benches["figstep-tiny"])
    assert tiny[0].benchmark == "figstep-tiny"
    assert "SafeBench-Tiny" in tiny[0].image_path


def test_spavl_parquet_with_embedded_images(benches):
    items = load_benchmark("spavl", benches["spavl"])
    kinds = Counter((i.meta["split"], i.kind) for i in items)
    assert kinds == {("harm", "harmful"): 4, ("help", "benign"): 4}
    assert all(Path(i.image_path).exists() for i in items)
    assert items[0].category == "harm/Illegal Activities"
    # images are cached by content: loading again gives the same paths
    again = load_benchmark("spavl", benches["spavl"])
    assert [i.image_path for i in again] == [i.image_path for i in items]


def test_spavl_hub_converted_layout(copy_of):
    root = copy_of("spavl")
    for split in ("harm", "help"):
        (root / "test" / split).mkdir()
        (root / "test" / f"{split}-00000-of-00001.parquet").rename(
            root / "test" / split / "0000.parquet"
        )
    assert Counter(i.kind for i in load_benchmark("spavl", root)) == {"harmful": 4, "benign": 4}


def test_vlguard_three_subsets(benches):
    items = load_benchmark("vlguard", benches["vlguard"])
    subsets = Counter((i.category, i.kind) for i in items)
    assert subsets == {
        ("unsafes", "harmful"): 2,
        ("safe_unsafes", "harmful"): 2,
        ("safe_safes", "benign"): 2,
    }
    safe_unsafe = next(i for i in items if i.category == "safe_unsafes")
    assert safe_unsafe.prompt.startswith("Placeholder misuse")
    # the json file itself works as the path too
    assert len(load_benchmark("vlguard", Path(benches["vlguard"]) / "test.json")) == 6


def test_mossbench_and_mmvet(benches):
    moss = load_benchmark("mossbench", benches["mossbench"])
    assert len(moss) == 6 and {i.kind for i in moss} == {"benign"}
    assert {i.category for i in moss} == {"type_1", "type_2", "type_3"}
    # the data/ folder itself is accepted
    assert len(load_benchmark("mossbench", Path(benches["mossbench"]) / "data")) == 6
    vet = load_benchmark("mmvet", benches["mmvet"])
    assert [i.reference for i in vet] == ["4", "red<OR>crimson", "cat<AND>dog", "hello"]
    assert vet[2].category == "rec+spat"


def test_per_category_subsample_is_seeded_and_bounded(benches):
    full = load_benchmark("mmsafety", benches["mmsafety"])
    a = load_benchmark("mmsafety", benches["mmsafety"], per_category=5, seed=1)
    b = load_benchmark("mmsafety", benches["mmsafety"], per_category=5, seed=1)
    c = load_benchmark("mmsafety", benches["mmsafety"], per_category=5, seed=2)
    assert [i.key for i in a] == [i.key for i in b]
    assert Counter(i.category for i in a) == {"01-Illegal_Activitiy": 5, "02-HateSpeech": 5}
    assert [i.key for i in a] != [i.key for i in c]
    # original order is kept
    order = [i.key for i in full]
    assert [order.index(i.key) for i in a] == sorted(order.index(i.key) for i in a)
    # one category's draw does not depend on the others
    first = [i for i in full if i.category == "01-Illegal_Activitiy"]
    alone = subsample_per_category(first, 5, seed=1)
    assert [i.key for i in alone] == [i.key for i in a if i.category == "01-Illegal_Activitiy"]
    with pytest.raises(VSFAError, match="at least 1"):
        subsample_per_category(full, 0)


def test_wrong_layout_errors_name_what_is_missing(benches, copy_of, tmp_path):
    with pytest.raises(VSFAError, match=r"mmvet folder .* not in the expected layout.*mm-vet.json"):
        load_benchmark("mmvet", benches["vlguard"])
    with pytest.raises(VSFAError, match="figstep.*safebench.csv"):
        load_benchmark("figstep", benches["mmsafety"])
    with pytest.raises(VSFAError, match="SPA-VL folder .* not in the expected layout"):
        load_benchmark("spavl", benches["mossbench"])
    with pytest.raises(VSFAError, match="does not exist"):
        load_benchmark("vlguard", tmp_path / "nowhere")
    with pytest.raises(VSFAError, match="needs a local folder"):
        load_benchmark("mmsafety", None)
    with pytest.raises(VSFAError, match="unknown benchmark 'nope'.*mmsafety"):
        load_benchmark("nope", benches["mmsafety"])


def test_missing_images_and_fields_are_reported(copy_of):
    mms = copy_of("mmsafety")
    shutil.rmtree(mms / "MM-SafetyBench(imgs)" / "02-HateSpeech" / "SD_TYPO")
    with pytest.raises(
        VSFAError,
        match=r"has questions for 02-HateSpeech but no images under "
        r"MM-SafetyBench\(imgs\)/02-HateSpeech/SD_TYPO",
    ):
        load_benchmark("mmsafety", mms)
    fig = copy_of("figstep")
    (fig / "data/images/SafeBench/query_ForbidQI_2_1_6.png").unlink()
    with pytest.raises(VSFAError, match="image for safebench.csv line 4 is missing"):
        load_benchmark("figstep", fig)
    vlg = copy_of("vlguard")
    records = json.loads((vlg / "test.json").read_text())
    del records[-1]["instr-resp"][1]
    (vlg / "test.json").write_text(json.dumps(records))
    with pytest.raises(VSFAError, match="no 'unsafe_instruction'"):
        load_benchmark("vlguard", vlg)
    vet = copy_of("mmvet")
    data = json.loads((vet / "mm-vet.json").read_text())
    del data["v1_1"]["answer"]
    (vet / "mm-vet.json").write_text(json.dumps(data))
    with pytest.raises(VSFAError, match="v1_1: missing field.*answer"):
        load_benchmark("mmvet", vet)


def test_png_jpg_variation_is_tolerated(copy_of):
    moss = copy_of("mossbench")
    image = moss / "data/images/1.png"
    image.rename(image.with_suffix(".webp"))
    items = load_benchmark("mossbench", moss)
    assert items[0].image_path.endswith("1.webp")


def test_empty_benchmark_and_bad_parquet(copy_of):
    moss = copy_of("mossbench")
    (moss / "data/images_information/information.json").write_text("{}")
    with pytest.raises(VSFAError, match="holds no benchmark items"):
        load_benchmark("mossbench", moss)
    spavl = copy_of("spavl")
    (spavl / "test/harm-00000-of-00001.parquet").write_bytes(b"not parquet")
    with pytest.raises(VSFAError, match="not a readable parquet file"):
        load_benchmark("spavl", spavl)


def test_parse_bench_spec_and_jsonl(tmp_path):
    assert parse_bench_spec("mmsafety=/data/mm") == ("mmsafety", "/data/mm")
    assert parse_bench_spec("organism") == ("organism", None)
    with pytest.raises(VSFAError, match="path after '=' is empty"):
        parse_bench_spec("mmsafety=")
    file = tmp_path / "mine.jsonl"
    rows = [
        {"id": "a", "category": "c", "image_path": None, "prompt": "hi", "kind": "benign"},
        {"id": "a", "category": "c", "image_path": None, "prompt": "yo", "kind": "harmful"},
    ]
    file.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(VSFAError, match="duplicate item id 'mine/a'"):
        load_benchmark("jsonl", file)
    rows[1]["id"] = "b"
    file.write_text("\n".join(json.dumps(r) for r in rows))
    items = load_benchmark("jsonl", file)
    assert [i.key for i in items] == ["mine/a", "mine/b"] and items[1].kind == "harmful"
