"""CLI: ``vsfa demo``, ``vsfa run`` and ``vsfa persona report`` (a runner, so it lives here and
joins the ``persona`` group)."""

from __future__ import annotations

from pathlib import Path

import typer

from interp.options import config_command
from interp.persona.commands import persona_app
from interp.persona.report_config import ReportConfig
from interp.pipeline.demo_config import DemoConfig


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
    app.command("run")(run_command)
    persona_app.command("report")(persona_report_command)


@config_command(DemoConfig, short={"out": "-o", "seeds": "--seed", "quiet": "-q"})
def demo_command(config: DemoConfig) -> None:
    """The whole VSFA story on a world's shipped model: train, evaluate, find the latent, steer
    with it; prints the table and writes results.json, steering.json and report.html."""
    from interp.pipeline.demo import run_demo

    run_demo(config, echo=typer.echo)


def run_command(
    experiment: Path = typer.Argument(..., help="experiment YAML"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Run an experiment: data -> train -> eval for methods x seeds, then the table."""
    from interp.pipeline.experiment import load_experiment
    from interp.pipeline.run import run_experiment

    out = run_experiment(load_experiment(experiment), quiet=quiet)
    typer.echo((out / "table.md").read_text(encoding="utf-8"), nl=False)
    typer.echo(f"wrote {out}/table.md and table.json")


@config_command(ReportConfig, short={"out": "-o", "quiet": "-q"})
def persona_report_command(config: ReportConfig) -> None:
    """The persona analysis on a world's shipped model: VSFA per seed, persona vector, held-out
    latent selection, scores and the steering frontier; writes persona_report.json."""
    from interp.pipeline.persona_report import run_persona_report

    run_persona_report(config, echo=typer.echo)
