"""CLI: ``vsfa steer`` (sweep options: :class:`interp.steer.config.SteerConfig`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from interp.options import config_command
from interp.steer.config import SteerConfig


@config_command(SteerConfig, short={"quiet": "-q"})
def steer_command(
    config: SteerConfig,
    model: str = typer.Option(..., "--model", "-m", help="hub id or local model folder"),
    sae: Path = typer.Option(..., help="SAE folder (sae_lens format)"),
    bench: list[str] = typer.Option(..., "--bench", help="NAME or NAME=PATH (repeatable)"),
    out: Path = typer.Option(..., "--out", "-o", help="sweep folder"),
    adapter: Path | None = typer.Option(None, help="PEFT adapter or training run folder"),
    judge: str = typer.Option("keyword", help="keyword, llm:PATH or a registered judge"),
    per_category: int | None = typer.Option(None, min=1, help="at most N items per category"),
    max_new_tokens: int = typer.Option(64, min=1),
    batch_size: int = typer.Option(8, min=1),
    device: str = typer.Option("auto", help="cpu, cuda or auto"),
    dtype: str = typer.Option("auto", help="float32, bfloat16 or auto"),
) -> None:
    """Dose-response sweep of one latent (or a set) through the eval harness, with controls."""
    from interp.analysis.latents_file import selected_latents
    from interp.data.benchmarks import load_benchmarks
    from interp.eval.generation import GenerationConfig
    from interp.eval.judges import make_judge
    from interp.eval.shards import on_main
    from interp.models import load_vlm
    from interp.models.loading import resolve_device
    from interp.parallel import check_launch, process_group
    from interp.sae import load_sae
    from interp.steer.modes import steering_mode
    from interp.steer.report import render_markdown
    from interp.steer.sweep import steer_sweep

    check_launch(command="steer")  # a launch that would run one process fails before any work
    steering_mode(config.mode)  # bad input fails before any model loads
    if config.latent is None:
        config = dataclasses.replace(config, latent=selected_latents(config.latents))
    items = load_benchmarks(bench, per_category, config.seed)
    generation = GenerationConfig(
        max_new_tokens=max_new_tokens, batch_size=batch_size, seed=config.seed
    )
    # under torchrun: join the group (each rank on its own GPU) before the models load; only
    # rank 0 judges, so only it loads the judge
    with process_group(str(resolve_device(device)), command="steer") as ranks:
        judge_impl = on_main(ranks, lambda: make_judge(
            judge, device=device, dtype=dtype, batch_size=batch_size, quiet=config.quiet
        ), share=False)  # fmt: skip
        vlm = load_vlm(
            model, device=device, dtype=dtype, adapter=adapter, device_map=config.device_map,
            max_memory=config.max_memory,
        )  # fmt: skip
        sae_model = load_sae(sae, device=str(vlm.device))
        label = {
            "model": Path(model.rstrip("/")).name or model,
            "adapter": str(adapter) if adapter else None,
        }
        result = steer_sweep(vlm, items, sae_model, judge_impl, out, config,
                             generation=generation, label=label)  # fmt: skip
    if not ranks.is_main:
        return
    typer.echo(render_markdown(result))
    typer.echo(f"wrote {out}/steering.json and {out}/steering.md")


def register(app: typer.Typer) -> None:
    app.command("steer")(steer_command)
