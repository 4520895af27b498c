"""The ``vsfa`` command as a whole: every config field is an option, and ``--help`` stays light."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import subprocess
import sys

import pytest
import typer
from click import Command

import interp
from interp.cli import app
from interp.options import cli_fields, option_name

# Dataclasses named *Config that are not a command's options, and why.
NOT_COMMAND_CONFIGS = {
    # the tiny organism's architecture: fixed by the shipped weights, not a user setting
    "OrganismModelConfig",
    # every field is an option of `vsfa eval` through EvalConfig (tests/test_eval_cli.py)
    "GenerationConfig",
    "LLMJudgeConfig",
    # the top level of an experiment file (`vsfa run exp.yaml`), read with config_from_mapping
    "ExperimentConfig",
}


def commands(group: Command, path: tuple[str, ...] = ()):
    """(path, click command) for every leaf command under ``group``."""
    if hasattr(group, "commands"):  # a group (typer may bring its own click)
        for name, command in group.commands.items():
            yield from commands(command, (*path, name))
    else:
        yield path, group


def config_commands() -> dict[type, list[tuple[tuple[str, ...], Command]]]:
    found: dict[type, list] = {}
    for path, command in commands(typer.main.get_command(app)):
        callback = command.callback
        while callback is not None and not hasattr(callback, "config_class"):
            callback = getattr(callback, "__wrapped__", None)  # typer wraps the command
        config_class = getattr(callback, "config_class", None)
        if config_class is not None:
            found.setdefault(config_class, []).append((path, command))
    return found


def test_every_field_of_every_command_config_is_an_option_with_help():
    found = config_commands()
    assert found, "no command is generated from a config"
    for config_class, uses in found.items():
        for path, command in uses:
            params = {p.name: p for p in command.params}
            for f in cli_fields(config_class):
                assert f.name in params, f"vsfa {' '.join(path)} lacks {option_name(f.name)}"
                param = params[f.name]
                assert getattr(param, "help", None) or param.param_type_name == "argument", (
                    f"vsfa {' '.join(path)} {option_name(f.name)} has no help"
                )


def _config_dataclasses() -> dict[str, type]:
    configs = {}
    for module in pkgutil.walk_packages(interp.__path__, "interp."):
        imported = importlib.import_module(module.name)
        for name, value in vars(imported).items():
            if (
                name.endswith("Config")
                and dataclasses.is_dataclass(value)
                and isinstance(value, type)
                and value.__module__ == imported.__name__
            ):
                configs[f"{value.__module__}.{name}"] = value
    return configs


def test_every_config_dataclass_drives_a_command():
    driven = set(config_commands())
    missing = [
        path
        for path, cls in _config_dataclasses().items()
        if cls not in driven and cls.__name__ not in NOT_COMMAND_CONFIGS
    ]
    assert not missing, f"configs no command is generated from: {missing}"


@pytest.mark.parametrize("argv", [["--help"], ["sae", "train", "--help"], ["steer", "--help"]])
def test_help_does_not_import_the_heavy_libraries(argv):
    """``vsfa --help`` must start fast: sae_lens, transformers and peft load inside commands."""
    probe = (
        "import sys; from interp.cli import app; import typer\n"
        f"try:\n    typer.main.get_command(app).main({argv!r}, standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('sae_lens', 'transformers', 'peft', 'transformer_lens') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
