"""CLI: ``vsfa sae train``, one option per :class:`~interp.sae.config.SAETrainConfig` field."""

from __future__ import annotations

import typer

from interp.options import config_command
from interp.sae.config import SAETrainConfig

sae_app = typer.Typer(help="Sparse autoencoders on cached activations.", no_args_is_help=True)

SHOWN = ("fvu", "explained_variance", "l0", "dead_fraction", "ce_loss_increase", "kl")


@sae_app.command("train")
@config_command(SAETrainConfig, short={"out": "-o", "hook_name": "--hook", "quiet": "-q"})
def train_command(
    config: SAETrainConfig,
    slow_step: bool = typer.Option(
        False, "--slow-step", help="sae_lens's own step also for topk (as --no-fast-step)"
    ),
) -> None:
    """Train an SAE (sae_lens format) on cached activations and write metrics.json."""
    from interp.artifacts import read_json
    from interp.sae.train import train_sae

    if slow_step:
        config.fast_step = False
    path = train_sae(config)
    metrics = read_json(path / "metrics.json")
    summary = ", ".join(
        f"{key} {metrics[key]:.4g}" for key in SHOWN if isinstance(metrics.get(key), (int, float))
    )
    typer.echo(f"{path}: {summary}")
    for line in metrics.get("warnings") or []:
        typer.secho(line, err=True, fg="red", bold=True)


def register(app: typer.Typer) -> None:
    app.add_typer(sae_app, name="sae")
