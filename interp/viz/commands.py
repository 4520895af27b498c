"""CLI: ``vsfa dashboard``, one option per :class:`DashboardConfig` field."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from interp.options import config_command


@dataclass
class DashboardConfig:
    """One standalone HTML report of a run folder."""

    run: str
    """run folder holding the stages' JSON outputs"""
    out: str = "report.html"
    """HTML file to write"""
    title: str | None = None
    """report title (default: the run folder's name)"""
    neuronpedia: str | None = None
    """also export the listed latents' pages in Neuronpedia's feature JSON format (batch-N.json)
    into this folder"""


@config_command(DashboardConfig)
def dashboard_command(config: DashboardConfig) -> None:
    """Write one standalone HTML report (results, latent cards, steering, SAE curves)."""
    from pathlib import Path

    from interp.viz.dashboard import write_dashboard

    path = write_dashboard(config.run, config.out, title=config.title)
    typer.echo(f"report: {Path(path).resolve()}")
    if config.neuronpedia:
        from interp.viz.neuronpedia import export_run

        pages = export_run(config.run, config.neuronpedia)
        typer.echo(f"neuronpedia: {len(pages)} batch files in {Path(config.neuronpedia).resolve()}")


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard_command)
