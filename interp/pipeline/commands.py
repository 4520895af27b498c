"""CLI: ``vsfa demo`` and ``vsfa run``."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
    app.command("run")(run_command)


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
    from interp.pipeline.demo import DemoConfig, run_demo

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
