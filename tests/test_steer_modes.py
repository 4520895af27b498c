"""Steering modes: the registry, what each mode's hooks do, and a new mode driving a sweep."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from test_steer_sweep import HOOK, _items, _sae

from interp.errors import VSFAError
from interp.hooks.native import hooked
from interp.options import config_from_mapping
from interp.steer import STEERING_MODES, SteerConfig, SteeringMode, SteerSite, steer_sweep
from interp.steer.modes import steering_mode


def test_the_built_in_modes_are_registered_and_an_unknown_one_names_the_nearest():
    assert STEERING_MODES.names() == [
        "ablate", "add", "add-direction", "clamp", "project-out", "project-out-direction",
    ]  # fmt: skip
    with pytest.raises(VSFAError, match=r"--mode: unknown steering mode 'abalte'; did you mean"):
        steering_mode("abalte")


def _steered_residual(vlm, factory):
    """The residual at HOOK after the steering hook, on one short prompt."""
    seen = []
    inputs = vlm.prepare([None], ["hello there"])
    record = {HOOK: lambda hidden: seen.append(hidden.detach().clone())}
    with factory(), hooked(vlm, record), torch.no_grad():
        vlm.model(**inputs)
    return seen[0]


def test_project_out_removes_the_latents_decoder_direction(tiny_vlm):
    vlm = tiny_vlm("llava")
    sae = _sae(vlm.d_model)
    site = SteerSite(vlm, sae, HOOK)
    mode = steering_mode("project-out")
    unit = sae.W_dec[[3, 5]].detach().sum(0)
    unit = unit / unit.norm()
    plain = _steered_residual(vlm, STEERING_MODES.get("add").hook(site, 3, 0.0))
    removed = _steered_residual(vlm, mode.hook(site, [3, 5], 1.0))
    assert (plain @ unit).abs().max() > 1e-3
    assert (removed @ unit).abs().max() < 1e-4
    half = _steered_residual(vlm, mode.hook(site, [3, 5], 0.5))
    torch.testing.assert_close(half @ unit, 0.5 * (plain @ unit), atol=1e-4, rtol=1e-4)
    assert mode.unsteered_at_zero and mode.has_baseline and not mode.baseline_at_latent_norm


def test_add_rescales_random_controls_to_the_chosen_norm_and_clamp_has_no_baseline(tiny_vlm):
    vlm = tiny_vlm("llava")
    site = SteerSite(vlm, _sae(vlm.d_model), HOOK)
    control = STEERING_MODES.get("add").random_control(site, [1, 2], 2.0, norm=3.0)
    direction = control.args[2]  # add_direction(vlm, hook, direction, alpha, positions)
    assert float(direction.norm()) == pytest.approx(3.0)
    clamp = STEERING_MODES.get("clamp")
    assert clamp.baseline(site, torch.ones(vlm.d_model), 1.0) is None
    assert not clamp.unsteered_at_zero and not clamp.has_baseline


class _Scaled(SteeringMode):
    """A mode defined outside the package: add twice the decoder row."""

    name = "twice"

    def hook(self, site, latents, alpha):
        return STEERING_MODES.get("add").hook(site, latents, 2 * alpha)


def test_a_registered_mode_drives_the_sweep(tiny_vlm, tmp_path, monkeypatch):
    from interp.eval.generation import GenerationConfig
    from interp.eval.judges import make_judge

    monkeypatch.setitem(STEERING_MODES._entries, "twice", _Scaled())
    vlm = tiny_vlm("llava")
    config = SteerConfig(latent=4, mode="twice", alphas=[0, 3], n_random=1, n_boot=20, quiet=True)
    result = steer_sweep(
        vlm, _items(tmp_path), _sae(vlm.d_model), make_judge("keyword"), tmp_path / "s", config,
        generation=GenerationConfig(max_new_tokens=3, batch_size=4),
    )  # fmt: skip
    assert result["mode"] == "twice" and [p["alpha"] for p in result["curve"]] == [0, 3]
    # not unsteered at zero: alpha 0 is a point of its own; no baseline without one given
    assert (tmp_path / "s" / "latent_4" / "alpha_0" / "generations.jsonl").exists()
    assert result["diff_of_means"] is None
    assert json.loads((tmp_path / "s" / "steering.json").read_text())["mode"] == "twice"


def test_project_out_sweep_projects_the_diff_of_means_out(tiny_vlm, tmp_path):
    from interp.eval.generation import GenerationConfig
    from interp.eval.judges import make_judge

    vlm = tiny_vlm("llava")
    dom = tmp_path / "dom.safetensors"
    save_file({"direction": torch.randn(vlm.d_model)}, str(dom))
    config = SteerConfig(
        latent=[2, 9], mode="project-out", alphas=[0, 1], n_random=1, diff_of_means=str(dom),
        n_boot=20, quiet=True,
    )  # fmt: skip
    result = steer_sweep(
        vlm, _items(tmp_path), _sae(vlm.d_model), make_judge("keyword"), tmp_path / "s", config,
        generation=GenerationConfig(max_new_tokens=3, batch_size=4),
    )  # fmt: skip
    assert [p["alpha"] for p in result["diff_of_means"]] == [0, 1]
    assert result["diff_of_means_scale"] == "raw"
    assert (tmp_path / "s" / "unsteered").exists()
    assert (tmp_path / "s" / "diff_of_means" / "alpha_1" / "generations.jsonl").exists()


def test_steer_config_from_a_mapping_and_its_checks():
    config = config_from_mapping(SteerConfig, {"latent": [3, 4], "alphas": "0,1,1"}, "steer")
    assert config.latent == [3, 4] and config.alphas == [0.0, 1.0]
    assert config.baseline is None
    assert SteerConfig(latents="d/latents.json").baseline == "d/latents.json"
    with pytest.raises(VSFAError, match=r"steer.alpha: unknown key; did you mean 'alphas'"):
        config_from_mapping(SteerConfig, {"latent": 1, "alpha": [1]}, "steer")
    with pytest.raises(VSFAError, match="unknown positions"):
        SteerConfig(1, positions="middle")
    with pytest.raises(VSFAError, match="--dom-alphas"):
        SteerConfig(1, dom_alphas=["x"])
