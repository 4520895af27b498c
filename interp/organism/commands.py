"""``vsfa organism ...``: world data, the persona corpus, pretraining, the benchmark suite,
opening probabilities."""

from __future__ import annotations

from pathlib import Path

import typer

from interp.options import config_command
from interp.organism.config import CorpusConfig, PretrainConfig, WorldDataConfig
from interp.organism.seeds import SeedsConfig

organism_app = typer.Typer(help="The model organism: world data, pretraining, benchmark.")


@organism_app.command("data")
@config_command(WorldDataConfig, short={"out": "-o"})
def data_command(config: WorldDataConfig) -> None:
    """Write threat/benign image folders with sidecars, style and 60-image subsets, a VLGuard
    set and a corpus sample (for SAE training)."""
    from dataclasses import asdict

    from interp.organism.data import write_world_data

    options = asdict(config)
    out, seed = options.pop("out"), options.pop("seed")
    for name, path in write_world_data(out, seed, **options).items():
        typer.echo(f"{name:16s} {path}")


@organism_app.command("corpus")
@config_command(CorpusConfig)
def corpus_command(
    config: CorpusConfig,
    chats: int = typer.Option(5, "--chats", help="chats to draw"),
    seed: int = typer.Option(0, "--seed", help="seeds the chats and the scenes they show"),
) -> None:
    """Print chats of the persona corpus drawn with these settings (what pretraining reads),
    each headed by its persona."""
    import random

    from interp.organism import corpus, world

    rng = random.Random(seed)
    scenes = [world.sample_scene(rng) for _ in range(200)]
    for index in range(chats):
        persona, turns = corpus.sample_chat(rng, scenes, config)
        typer.echo(f"--- chat {index}: {persona}")
        for turn in turns:
            shown = "" if turn.image is None else " [image]"
            typer.echo(f"user{shown}: {turn.prompt}\nassistant: {turn.response}")


@organism_app.command("pretrain")
@config_command(PretrainConfig, short={"out": "-o", "quiet": "-q"})
def pretrain_command(config: PretrainConfig) -> None:
    """Pretrain an organism from scratch (vision warm-up, then the persona corpus)."""
    from interp.organism.pretrain import pretrain

    typer.echo(str(pretrain(config)))


@organism_app.command("seeds")
@config_command(SeedsConfig, short={"out": "-o", "quiet": "-q"})
def seeds_command(config: SeedsConfig) -> None:
    """The table over pretraining seeds: base and decoupled twin per seed, the recipe's
    fine-tunes over fine-tuning seeds, every bar per seed (seeds.json, seeds.md; resumes)."""
    from interp.organism.seeds import run_seeds

    typer.echo(str(run_seeds(config) / "seeds.md"))


@organism_app.command("bench")
def bench_command(
    out: Path = typer.Option(..., help="folder to build the organism benchmark suite in"),
    seed: int = typer.Option(0, help="seeds the suite's images and requests"),
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
