"""CLI: ``vsfa train``, one option per :class:`~interp.train.config.TrainConfig` field."""

from __future__ import annotations

import typer

from interp.options import config_command
from interp.train.config import TrainConfig


@config_command(TrainConfig, short={"model": "-m", "data": "-d", "out": "-o", "quiet": "-q"})
def train_command(config: TrainConfig) -> None:
    """Fine-tune (VSFA with LoRA or full weights, or the VLGuard baseline); resumable."""
    from interp.artifacts import read_json
    from interp.train.trainer import train

    run = train(config)
    manifest = read_json(run / "manifest.json")
    loss = manifest.get("final_loss")
    done = f"final loss {loss:.4f}, " if loss is not None else ""
    typer.echo(f"wrote {run} ({done}{manifest.get('wall_time_s', 0):.1f} s)")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
