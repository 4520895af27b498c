"""The registry helper and configs declared once (dataclass fields -> CLI options, YAML)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest
import typer
from typer.testing import CliRunner

from interp.errors import VSFAError
from interp.options import config_command, config_from_mapping, field_docs
from interp.registry import Registry


def test_registry_gets_registered_entries_and_names_the_nearest_for_a_typo():
    modes = Registry("steering mode")
    modes.add("ablate", 1)

    @modes.register("add")
    def add():
        return 2

    assert modes.get("add") is add and modes.names() == ["ablate", "add"]
    assert "ablate" in modes and "clamp" not in modes
    with pytest.raises(VSFAError, match=r"unknown steering mode 'abalte'; did you mean 'ablate'"):
        modes.get("abalte")
    with pytest.raises(ValueError, match="twice"):
        modes.add("add", 3)


def test_plugins_register_themselves_through_the_entry_point():
    from interp.data.records import BENCHMARKS
    from interp.registry import load_plugins

    load_plugins()
    assert "organism" in BENCHMARKS


@dataclass
class Toy:
    model: str
    """hub id or local folder"""
    alphas: list[float] = field(default_factory=lambda: [0.0, 0.5])
    """steering strengths, comma-separated"""
    latent: int | list[int] | None = None
    """one latent or several"""
    mode: Literal["add", "ablate"] = "add"
    """what to do"""
    quiet: bool = False
    """no progress bars"""
    limit: int | None = None
    """at most this many"""


def toy_app(seen: list) -> typer.Typer:
    app = typer.Typer()

    @app.command("toy")
    @config_command(Toy, short={"model": "-m", "quiet": "-q"})
    def run(config: Toy, force: bool = typer.Option(False, help="redo")) -> None:
        seen.append((config, force))

    @app.command("other")
    def other() -> None: ...

    return app


def test_every_field_is_an_option_with_its_docstring_as_help():
    seen: list = []
    result = CliRunner().invoke(toy_app(seen), ["toy", "--help"], env={"COLUMNS": "240"})
    assert result.exit_code == 0
    for name, doc in field_docs(Toy).items():
        assert "--" + name.replace("_", "-") in result.output
        assert doc in result.output
    assert "redo" in result.output


def test_options_are_converted_to_the_field_types():
    seen: list = []
    args = ["toy", "-m", "m1", "--alphas", "1,2.5", "--latent", "3", "-q", "--force"]
    assert CliRunner().invoke(toy_app(seen), args).exit_code == 0
    config, force = seen[-1]
    assert config == Toy("m1", [1.0, 2.5], 3, "add", True, None) and force is True
    CliRunner().invoke(toy_app(seen), ["toy", "-m", "m", "--latent", "3,4", "--limit", "2"])
    assert seen[-1][0].latent == [3, 4] and seen[-1][0].limit == 2
    CliRunner().invoke(toy_app(seen), ["toy", "-m", "m", "--alphas", "1", "--alphas", "2,3"])
    assert seen[-1][0].alphas == [1.0, 2.0, 3.0]  # repeated and comma-separated
    CliRunner().invoke(toy_app(seen), ["toy", "-m", "m"])
    assert seen[-1][0].alphas == [0.0, 0.5]  # not given: the field's default


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "zz"], "--mode: 'zz' is not one of add, ablate"),
        (["--alphas", "1,x"], "--alphas: 'x' is not a float"),
    ],
)
def test_bad_values_are_one_clear_error(args, message):
    result = CliRunner().invoke(toy_app([]), ["toy", "-m", "m", *args])
    assert isinstance(result.exception, VSFAError) and str(result.exception) == message


def test_a_mapping_builds_the_same_config_and_an_unknown_key_names_the_nearest():
    assert config_from_mapping(Toy, {"model": "m", "alphas": [1, 2]}, "steer") == Toy("m", [1, 2])
    with pytest.raises(VSFAError, match=r"steer.alpha: unknown key; did you mean 'alphas'"):
        config_from_mapping(Toy, {"model": "m", "alpha": [1]}, "steer")
    with pytest.raises(VSFAError, match="steer.model: is set by the experiment"):
        config_from_mapping(Toy, {"model": "m"}, "steer", model="x")
