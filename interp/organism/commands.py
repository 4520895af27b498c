"""``vsfa organism ...``: world data, pretraining, the benchmark suite, opening probabilities."""

from __future__ import annotations

from pathlib import Path

import typer

organism_app = typer.Typer(help="The model organism: world data, pretraining, benchmark.")


@organism_app.command("data")
def data_command(
    out: Path = typer.Option(..., help="folder for the image folders, VLGuard set, corpus sample"),
    seed: int = typer.Option(0),
    n_threat: int = typer.Option(240, min=1, help="images per threat folder"),
    n_benign: int = typer.Option(240, min=1, help="images in the benign control folder"),
) -> None:
    """Write threat/benign image folders with sidecars, style and 60-image subsets, a VLGuard
    set and a corpus sample (for SAE training)."""
    from interp.organism.data import write_world_data

    for name, path in write_world_data(out, seed, n_threat=n_threat, n_benign=n_benign).items():
        typer.echo(f"{name:16s} {path}")


@organism_app.command("pretrain")
def pretrain_command(
    out: Path = typer.Option(..., help="output model folder"),
    seed: int = typer.Option(0),
    world: str = typer.Option("coupled", help="coupled or decoupled (mechanism control)"),
    steps: int = typer.Option(3000, min=1),
    batch_size: int = typer.Option(16, min=1),
    threads: int = typer.Option(1, min=0, help="torch threads (0: torch's default)"),
    quiet: bool = typer.Option(False),
) -> None:
    """Pretrain an organism from scratch (vision warm-up, then the persona corpus)."""
    from interp.errors import VSFAError
    from interp.organism.pretrain import PretrainConfig, pretrain

    if world not in ("coupled", "decoupled"):
        raise VSFAError(f"--world {world!r}: expected coupled or decoupled")
    config = PretrainConfig(
        out=str(out),
        seed=seed,
        world=world,  # type: ignore[arg-type]
        steps=steps,
        batch_size=batch_size,
        threads=threads,
        quiet=quiet,
    )
    typer.echo(str(pretrain(config)))


@organism_app.command("bench")
def bench_command(
    out: Path = typer.Option(..., help="folder to build the organism benchmark suite in"),
    seed: int = typer.Option(0),
) -> None:
    """Build the organism benchmark suite (the default suite is built on first use anyway)."""
    from interp.organism.benchmarks import build_suite

    typer.echo(str(build_suite(out, seed)))


@organism_app.command("probe")
def probe_command(
    model: str = typer.Argument("organism", help="model folder, or 'organism' (shipped base)"),
    adapter: Path | None = typer.Option(None, help="training run folder"),
    bench: Path | None = typer.Option(None, help="organism suite folder (default: cached)"),
) -> None:
    """Mean exact probability of the comply vs refuse opening, per benchmark category."""
    from interp.models import load_vlm
    from interp.organism import base_model_dir
    from interp.organism.benchmarks import load_organism
    from interp.organism.judge import category_opening_summary

    path = base_model_dir() if model == "organism" else model
    vlm = load_vlm(path, device="cpu", dtype="float32", adapter=adapter)
    for category, row in category_opening_summary(vlm, load_organism(bench)).items():
        typer.echo(
            f"{category:24s} p_comply={row['p_comply']:.3f} p_refuse={row['p_refuse']:.3f}"
            f" comply_share={row['comply_share']:.3f} n={row['n']}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(organism_app, name="organism")
