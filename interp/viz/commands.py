"""``vsfa dashboard`` and ``vsfa demo``."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard_command)
    app.command("demo")(demo_command)


def dashboard_command(
    run: Path = typer.Option(..., "--run", help="run folder holding the stages' JSON outputs"),
    out: Path = typer.Option(Path("report.html"), "--out", help="HTML file to write"),
    title: str | None = typer.Option(None, help="report title (default: the run folder's name)"),
) -> None:
    """Write one standalone HTML report (results, latent cards, steering, SAE curves)."""
    from interp.viz.dashboard import write_dashboard

    path = write_dashboard(run, out, title=title)
    typer.echo(f"report: {path.resolve()}")


def demo_command(
    out: Path = typer.Option(Path("vsfa-demo"), "--out", help="output folder"),
    fast: bool = typer.Option(
        False, "--fast", help="shipped SAE, one seed, fewer items and alphas (< 3 min on a CPU)"
    ),
    seeds: list[int] | None = typer.Option(
        None, "--seed", help="training seed (repeat; default 0 and 1, or 0 with --fast)"
    ),
    per_category: int | None = typer.Option(
        None, min=1, help="benchmark items per category (default 24, 8 with --fast)"
    ),
    samples_per_item: int | None = typer.Option(
        None, min=0, help="sampled answers per item (default 4, 2 with --fast; 0: greedy)"
    ),
    n_random: int | None = typer.Option(
        None,
        "--n-random",
        min=1,
        help="random latent sets in the steering control (default 8, 2 with --fast)",
    ),
    sae: Path | None = typer.Option(None, help="use this SAE folder instead of training one"),
    device: str = typer.Option("cpu", help="cpu, cuda or auto"),
    threads: int = typer.Option(1, min=0, help="CPU threads for torch (0: torch's default)"),
    force: bool = typer.Option(False, help="rerun every step even when its output is current"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """The whole VSFA story on the shipped model organism: train, evaluate, find the latent,
    steer with it; prints the table and writes results.json, steering.json and report.html."""
    from interp.viz.demo import DemoConfig, run_demo

    config = DemoConfig(
        out=str(out),
        fast=fast,
        seeds=list(seeds) if seeds else None,
        per_category=per_category,
        samples_per_item=samples_per_item,
        n_random=n_random,
        sae=str(sae) if sae else None,
        device=device,
        threads=threads or None,
        force=force,
        quiet=quiet,
    )
    run_demo(config, echo=typer.echo)
