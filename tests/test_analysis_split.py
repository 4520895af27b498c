"""Held-out latent selection: the split rules, their errors, and what selection sees."""

from __future__ import annotations

import json

import pytest
from test_analysis_diff import orthonormal_sae, planted_pair

from interp.analysis import (
    DiffConfig,
    check_disjoint,
    diff_latents,
    prompt_template,
    split_prompts,
)
from interp.errors import VSFAError


def records(templates_per_kind: int = 4, per_template: int = 3):
    """Prompt records ``harmful_t<k>-<n>`` / ``benign_t<k>-<n>`` (template from the id)."""
    out = []
    for kind in ("harmful", "benign"):
        for t in range(templates_per_kind):
            for _ in range(per_template):
                out.append({"id": f"bench/{kind}_t{t}-{len(out):04d}", "kind": kind})
    return out


def split_of(recs, **options):
    return split_prompts(
        [r["id"] for r in recs], recs, [r["kind"] for r in recs], DiffConfig(**options)
    )


def test_prompt_template_rule():
    assert prompt_template({"id": "organism/harmful_image-0008"}) == "organism/harmful_image"
    assert prompt_template({"id": "apple_0004-12"}) == "apple_0004"
    assert prompt_template({"id": "17"}) == "17"  # a bare number: its own template
    assert prompt_template({"id": "x-1", "template": "size"}) == "size"
    assert prompt_template({"id": "x-1", "template": "size", "probe_id": "p3"}) == "p3"


def test_template_split_is_seeded_stratified_and_disjoint():
    recs = records(templates_per_kind=6)
    first = split_of(recs, split="template", split_seed=3)
    again = split_of(recs, split="template", split_seed=3)
    assert first.selection_ids == again.selection_ids and first.eval_ids == again.eval_ids
    assert not set(first.selection_ids) & set(first.eval_ids)
    assert sorted(first.selection_ids + first.eval_ids) == sorted(r["id"] for r in recs)
    # whole templates move: no template on both sides, half of each kind's held out
    held = {prompt_template({"id": i}) for i in first.eval_ids}
    chosen = {prompt_template({"id": i}) for i in first.selection_ids}
    assert not held & chosen
    assert sorted(held) == first.info["templates"]["eval"]
    for kind in ("harmful", "benign"):
        assert sum(t.startswith(f"bench/{kind}") for t in held) == 3
    others = {tuple(split_of(recs, split="template", split_seed=s).eval_ids) for s in range(6)}
    assert len(others) > 1  # the seed chooses which half


def test_split_none_says_selection_saw_every_prompt():
    recs = records()
    split = split_of(recs)
    assert split.selection_ids == [r["id"] for r in recs] and split.eval_ids == []
    assert "circular" in split.info["warning"]


def test_id_split_from_files(tmp_path):
    recs = records()
    ids = [r["id"] for r in recs]
    chosen = tmp_path / "selection.txt"
    chosen.write_text("# prompts of the training images\n" + "\n".join(ids[:5]) + "\n")
    split = split_of(recs, selection_ids=str(chosen))
    assert split.kind == "ids" and split.selection_ids == ids[:5]
    assert split.eval_ids == ids[5:]
    held = tmp_path / "eval.json"
    held.write_text(json.dumps(ids[-4:]))
    both = split_of(recs, selection_ids=str(chosen), eval_ids=str(held))
    assert both.eval_ids == ids[-4:] and both.info["n_unused"] == len(ids) - 9
    contexts = tmp_path / "contexts.jsonl"
    contexts.write_text("".join(json.dumps({"id": i, "cue": "vigilant"}) + "\n" for i in ids[:3]))
    assert split_of(recs, eval_ids=str(contexts)).selection_ids == ids[3:]


def test_split_errors_name_the_input(tmp_path):
    recs = records()
    ids = [r["id"] for r in recs]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(VSFAError, match=r"--selection-ids .*empty.txt holds no prompt ids"):
        split_of(recs, selection_ids=str(empty))
    unknown = tmp_path / "unknown.txt"
    unknown.write_text(f"{ids[0]}\nbench/other-0001\n")
    with pytest.raises(VSFAError, match=r"unknown.txt: 1 of its 2 ids are not prompts"):
        split_of(recs, selection_ids=str(unknown))
    chosen, held = tmp_path / "a.txt", tmp_path / "b.txt"
    chosen.write_text("\n".join(ids[:6]))
    held.write_text("\n".join(ids[4:8]))
    with pytest.raises(VSFAError, match=r"a.txt and --eval-ids .*b.txt share 2 prompt ids"):
        split_of(recs, selection_ids=str(chosen), eval_ids=str(held))
    every = tmp_path / "every.txt"
    every.write_text("\n".join(ids))
    with pytest.raises(VSFAError, match="the eval split is empty"):
        split_of(recs, selection_ids=str(every))
    with pytest.raises(VSFAError, match="the selection split holds 0 prompt"):
        split_of(recs, eval_ids=str(every))
    with pytest.raises(VSFAError, match="--split template: no template to hold out"):
        split_of(records(templates_per_kind=1), split="template")
    with pytest.raises(VSFAError, match="no such file"):
        split_of(recs, selection_ids=str(tmp_path / "missing.txt"))
    with pytest.raises(VSFAError, match="choose one"):
        DiffConfig(split="template", selection_ids=str(chosen))
    with pytest.raises(VSFAError, match="--split ids needs"):
        DiffConfig(split="ids")
    with pytest.raises(VSFAError, match="--split 'half'"):
        DiffConfig(split="half")


def test_selection_sees_only_its_prompts(tmp_path):
    """A shift planted on the held-out prompts only is reported there and never selected; one
    planted on the selection prompts is selected, and both splits' statistics are written."""
    sae = orthonormal_sae()
    base, tuned = planted_pair(sae, n_prompts=40)
    for prompt in base.prompts:
        prompt["id"] = f"{prompt['kind']}_t{prompt['index'] % 8 // 2}-{prompt['index']:03d}"
    plain = diff_latents(sae, base, tuned, split="template", top=5)
    held = set(plain["eval_ids"])
    # plant: latent 9 on every held-out prompt, latent 4 on every selection prompt
    prompt_of = base.tokens["prompt_index"].tolist()
    for row, index in enumerate(prompt_of):
        shift = 9 if base.prompts[index]["id"] in held else 4
        tuned.acts[row] += 1.5 * sae.W_dec[shift].detach()
    result = diff_latents(sae, base, tuned, split="template", top=5, out=tmp_path / "l.json")
    assert result["eval_ids"] == plain["eval_ids"]  # the split does not look at activations
    assert result["selected"]["latents"] == [4]
    entry = {e["index"]: e for e in result["latents"]}
    assert 9 not in entry or entry[9]["delta"] < 0.1  # invisible to selection and ranking
    assert entry[4]["eval"]["delta"] < 0.1 and entry[4]["delta"] > 0.5
    assert result["selected"]["eval"]["significant"]["4"] is False
    assert result["split"]["n_selection"] + result["split"]["n_eval"] == 40
    assert "selection split only" in result["selected"]["rule"]
    assert result["selected"]["rule_parameters"]["split"] == "template"
    assert result["diff_of_means"]["prompts"] == "selection_ids"
    splits = {e["split"] for d in result["details"].values() for e in d["top_examples"]}
    assert splits <= {"selection", "eval"}
    saved = json.loads((tmp_path / "l.json").read_text())
    check_disjoint(tmp_path / "l.json", saved["eval_ids"], what="the sweep's items")
    with pytest.raises(VSFAError, match=r"l.json: 2 of the sweep's items \(3 ids\) selected"):
        check_disjoint(
            tmp_path / "l.json", saved["selection_ids"][:2] + saved["eval_ids"][:1],
            what="the sweep's items",
        )  # fmt: skip
    old = {k: v for k, v in saved.items() if k != "selection_ids"}
    with pytest.raises(VSFAError, match="does not record which prompts selected"):
        check_disjoint(old, saved["eval_ids"])


def test_default_split_none_keeps_the_numbers():
    sae = orthonormal_sae()
    base, tuned = planted_pair(sae, shifts=[(7, 1.5, ("harmful", "benign"))])
    result = diff_latents(sae, base, tuned, top=5)
    assert result["split"]["kind"] == "none" and result["eval_ids"] == []
    assert result["selection_ids"] == [p["id"] for p in base.prompts]
    assert "eval" not in result["latents"][0] and "eval" not in result["selected"]
    with pytest.raises(VSFAError, match="40 of the scored items"):
        check_disjoint(result, result["selection_ids"])


def test_cli_split_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from interp.cli import app

    sae_dir = tmp_path / "sae"
    chosen = tmp_path / "a.txt"
    chosen.write_text("p1\n")
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["latents", "diff", "--sae", str(sae_dir), "--base-acts", "x", "--tuned-acts", "y",
         "--out", str(tmp_path / "l.json"), "--split", "template", "--selection-ids",
         str(chosen)],
    )  # fmt: skip
    assert result.exit_code != 0
    assert isinstance(result.exception, VSFAError) and "choose one" in str(result.exception)
