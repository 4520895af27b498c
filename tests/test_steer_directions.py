"""Direction steering: add-direction and project-out-direction edit the residual exactly, the
direction sources (tensor, FILE.safetensors:KEY, latents.json) and random directions."""

from __future__ import annotations

import json
from contextlib import nullcontext

import pytest
import torch
from safetensors.torch import save_file

from interp.errors import VSFAError
from interp.hooks.native import hooked
from interp.steer import STEERING_MODES, SteerSite
from interp.steer.directions import direction_hook, load_direction, random_directions

HOOK = "blocks.1.hook_resid_post"


def _residual(vlm, factory=None, images=(None,), prompts=("hello there",)):
    """The residual at HOOK (after any steering hook) on a short left-padded batch."""
    seen = []
    inputs = vlm.prepare(list(images), list(prompts))
    record = {HOOK: lambda hidden: seen.append(hidden.detach().clone())}
    with factory() if factory else nullcontext(), hooked(vlm, record), torch.no_grad():
        vlm.model(**inputs)
    return seen[0]


@pytest.mark.parametrize("family", ["llava", "qwen2_5_vl"])
def test_add_direction_adds_exactly_alpha_times_the_direction(tiny_vlm, tmp_path, family):
    vlm = tiny_vlm(family)
    direction = torch.randn(vlm.d_model, generator=torch.Generator().manual_seed(0))
    file = tmp_path / "persona.safetensors"
    save_file({f"persona/{HOOK}": direction, f"probe/{HOOK}": -direction}, str(file))
    site = SteerSite(vlm, None, HOOK)
    mode = STEERING_MODES.get("add-direction")
    prompts = ("hello there", "a longer prompt, so the batch is padded")
    plain = _residual(vlm, prompts=prompts, images=(None, None))
    for target in (direction, f"{file}:persona/{HOOK}"):
        added = _residual(vlm, mode.hook(site, target, 2.5), prompts=prompts, images=(None, None))
        torch.testing.assert_close(added - plain, 2.5 * direction.expand_as(plain), atol=1e-5,
                                   rtol=1e-5)  # fmt: skip
    probe = _residual(vlm, mode.hook(site, f"{file}:probe/{HOOK}", 1.0))
    torch.testing.assert_close(probe - _residual(vlm), -direction.expand_as(probe), atol=1e-5,
                               rtol=1e-5)  # fmt: skip
    # a random control is the same edit rescaled to the given norm
    control = mode.random_control(site, direction, 1.0, norm=3.0)
    moved = _residual(vlm, control) - _residual(vlm)
    assert float(moved[0, -1].norm()) == pytest.approx(3.0, rel=1e-4)


def test_project_out_direction_removes_alpha_times_the_component(tiny_vlm):
    vlm = tiny_vlm("llava")
    direction = torch.randn(vlm.d_model, generator=torch.Generator().manual_seed(1)) * 7
    unit = direction / direction.norm()
    site = SteerSite(vlm, None, HOOK)
    mode = STEERING_MODES.get("project-out-direction")
    plain = _residual(vlm)
    for alpha in (1.0, 0.5, 2.0):
        edited = _residual(vlm, mode.hook(site, direction, alpha))
        expected = plain - alpha * (plain @ unit).unsqueeze(-1) * unit
        torch.testing.assert_close(edited, expected, atol=1e-5, rtol=1e-5)
    assert (plain @ unit).abs().max() > 1e-2  # the component was there to remove
    assert mode.unsteered_at_zero and mode.has_baseline


def test_direction_modes_take_latents_as_their_decoder_direction(tiny_vlm):
    from test_steer_sweep import _sae

    vlm = tiny_vlm("llava")
    sae = _sae(vlm.d_model)
    site = SteerSite(vlm, sae, HOOK)
    by_latents = _residual(vlm, STEERING_MODES.get("add-direction").hook(site, [2, 5], 1.5))
    by_add = _residual(vlm, STEERING_MODES.get("add").hook(site, [2, 5], 1.5))
    torch.testing.assert_close(by_latents, by_add)
    with pytest.raises(VSFAError, match="need an SAE"):
        STEERING_MODES.get("add-direction").hook(SteerSite(vlm, None, HOOK), 3, 1.0)


def test_direction_sources_and_their_errors(tmp_path):
    direction = torch.arange(8, dtype=torch.float32)
    file = tmp_path / "p.safetensors"
    save_file({"persona/blocks.3.hook_resid_post": direction, "other": direction * 2}, str(file))
    assert torch.equal(load_direction(f"{file}:persona/blocks.3.hook_resid_post"), direction)
    assert direction_hook(f"{file}:persona/blocks.3.hook_resid_post") == "blocks.3.hook_resid_post"
    with pytest.raises(VSFAError, match=r"has no tensor 'persona/blocks\.2.*did you mean"):
        load_direction(f"{file}:persona/blocks.2.hook_resid_post")
    with pytest.raises(VSFAError, match="holds 2 tensors"):
        load_direction(file)
    with pytest.raises(VSFAError, match="does not exist"):
        load_direction(tmp_path / "missing.safetensors")
    with pytest.raises(VSFAError, match="has 8 dimensions; the model has d_model 4"):
        load_direction(direction, d_model=4)
    with pytest.raises(VSFAError, match="not a vector"):
        load_direction(torch.ones(2, 3))
    with pytest.raises(VSFAError, match="non-finite"):
        load_direction(torch.tensor([1.0, float("nan")]))
    # a diff's latents.json: its difference of means (the safetensors file beside it)
    dom = tmp_path / "diff_of_means.safetensors"
    save_file(
        {"direction": direction}, str(dom), metadata={"hook_name": "blocks.1.hook_resid_post"}
    )
    latents = tmp_path / "latents.json"
    latents.write_text(json.dumps({"hook_name": "blocks.1.hook_resid_post", "diff_of_means": {}}))
    assert torch.equal(load_direction(latents), direction)
    assert direction_hook(latents) == direction_hook(dom) == "blocks.1.hook_resid_post"


def test_random_directions_have_the_norm_and_are_seeded():
    first = random_directions(19, 32, 4.5, seed=3)
    assert len(first) == 19
    assert all(float(d.norm()) == pytest.approx(4.5, rel=1e-5) for d in first)
    again = random_directions(19, 32, 1.0, seed=3)
    for a, b in zip(first, again):  # the same orientations at another norm
        torch.testing.assert_close(a / 4.5, b, atol=1e-6, rtol=1e-5)
    other = random_directions(19, 32, 4.5, seed=4)
    assert not torch.allclose(first[0], other[0])
    units = torch.stack(first) / 4.5
    off_diagonal = (units @ units.T - torch.eye(19)).abs().max()
    assert off_diagonal < 0.8  # distinct orientations
    with pytest.raises(VSFAError, match="positive norm"):
        random_directions(3, 8, 0.0, seed=0)
