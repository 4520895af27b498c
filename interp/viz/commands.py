"""CLI: ``vsfa dashboard``."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard_command)


def dashboard_command(
    run: Path = typer.Option(..., "--run", help="run folder holding the stages' JSON outputs"),
    out: Path = typer.Option(Path("report.html"), "--out", help="HTML file to write"),
    title: str | None = typer.Option(None, help="report title (default: the run folder's name)"),
) -> None:
    """Write one standalone HTML report (results, latent cards, steering, SAE curves)."""
    from interp.viz.dashboard import write_dashboard

    path = write_dashboard(run, out, title=title)
    typer.echo(f"report: {path.resolve()}")
