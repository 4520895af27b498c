"""The ``vsfa`` command as a whole: every config field is an option, and ``--help`` stays light."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
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


def _vsfa(*argv: str, columns: int = 80) -> subprocess.CompletedProcess:
    from interp.console import QUIET_ENV

    # a quiet run earlier in this session (the demo's) leaves its settings in os.environ
    env = {k: v for k, v in os.environ.items() if k not in QUIET_ENV}
    env["COLUMNS"] = str(columns)
    return subprocess.run(
        [sys.executable, "-m", "interp.cli", *argv], capture_output=True, text=True, env=env,
        timeout=300,
    )  # fmt: skip


HELP_COMMANDS = [[], ["train"], ["eval"], ["sae", "train"], ["latents", "diff"],
                 ["persona", "frontier"], ["steer"], ["demo"], ["info"]]  # fmt: skip


def test_help_is_whole_at_80_columns():
    probe = (
        "import contextlib, io, json, sys\n"
        "from interp import console\n"
        "assert console.plain_help_if_narrow()\n"
        "from interp.cli import app\n"
        "import typer\n"
        "out = {}\n"
        f"for argv in {HELP_COMMANDS!r}:\n"
        "    buffer = io.StringIO()\n"
        "    with contextlib.redirect_stdout(buffer):\n"
        "        typer.main.get_command(app).main([*argv, '--help'], standalone_mode=False)\n"
        "    out[' '.join(argv)] = buffer.getvalue()\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "COLUMNS": "80"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env=env, check=True)  # fmt: skip
    helps = json.loads(result.stdout)
    assert len(helps) == len(HELP_COMMANDS)
    for name, text in helps.items():
        assert "Usage: " in text and "--help" in text, name
        assert max(len(line) for line in text.splitlines()) <= 80, name
        assert "\u2026" not in text, name  # no option name cut
    assert "--load-model / --no-model" in helps["latents diff"]
    assert "--no-no-model" not in helps["latents diff"]
    assert "(one of: linear, cosine," in " ".join(helps["train"].split())  # long choices
    assert "--model" in helps["info"] and "[MODEL]" in helps["info"]


@pytest.mark.slow
def test_quiet_silences_library_output_and_model_is_an_option(tiny_model_dir):
    """In a fresh process each: transformers prints its loading bar unless -q is given."""
    model = str(tiny_model_dir("llava"))
    loud = _vsfa("info", model)  # the older positional form still works
    assert loud.returncode == 0, loud.stderr
    assert "Loading weights" in loud.stderr  # what -q is there to silence
    for argv in (["info", "-q", "--model", model], ["-q", "info", "-m", model]):  # either place
        quiet = _vsfa(*argv)
        assert quiet.returncode == 0, quiet.stderr
        assert quiet.stderr == ""
        assert quiet.stdout == loud.stdout and "family:     llava" in quiet.stdout


def test_model_positional_or_option_not_both():
    from typer.testing import CliRunner

    runner = CliRunner()
    both = runner.invoke(app, ["info", "a", "--model", "b"])
    assert "two models given: 'a' and --model 'b'" in str(both.exception)
    neither = runner.invoke(app, ["generate", "-p", "hi"])
    assert "give the model: --model" in str(neither.exception)
    # the same model both ways is one model: it gets as far as loading it
    same = runner.invoke(app, ["info", "no/such-model", "--model", "no/such-model"])
    assert "two models" not in str(same.exception)


def test_quiet_flag_is_read_before_a_double_dash():
    from interp.console import wants_quiet

    assert wants_quiet(["demo", "-q"]) and wants_quiet(["--quiet", "info"])
    assert not wants_quiet(["steer", "--", "-q"]) and not wants_quiet(["info", "--query"])
