"""CLI: ``vsfa sae train``, one option per :class:`~interp.sae.config.SAETrainConfig` field."""

from __future__ import annotations

import typer

from interp.options import config_command
from interp.sae.config import SAETrainConfig

sae_app = typer.Typer(help="Sparse autoencoders on cached activations.", no_args_is_help=True)

SHOWN = ("fvu", "explained_variance", "l0", "dead_fraction", "ce_loss_increase", "kl")


@sae_app.command("train")
@config_command(
    SAETrainConfig,
    short={"out": "-o", "hook_name": "--hook", "width": "--d-sae", "quiet": "-q"},
)
def train_command(
    config: SAETrainConfig,
    slow_step: bool = typer.Option(
        False, "--slow-step", help="sae_lens's own step also for topk (as --no-fast-step)"
    ),
    hooks: list[str] = typer.Option(
        None,
        "--hooks",
        metavar="TEXT,...",
        help="several cached hooks: one SAE each (times each --width and --k), all from one pass "
        "over the activations, in OUT/HOOK-wWIDTH-kK/",
    ),
) -> None:
    """Train an SAE (sae_lens format) on cached activations and write metrics.json; with several
    hooks, widths or k values, one SAE each from one pass over the data."""
    from interp.artifacts import read_json
    from interp.errors import VSFAError
    from interp.sae.multi import train_saes
    from interp.sae.train import train_sae

    if slow_step:
        config.fast_step = False
    if hooks:
        if config.hook_name is not None:
            raise VSFAError("give --hook or --hooks, not both")
        config.hook_name = [h.strip() for part in hooks for h in part.split(",") if h.strip()]
        config.validate()
    paths = train_saes(config).values() if config.several else [train_sae(config.single())]
    for path in paths:
        metrics = read_json(path / "metrics.json")
        summary = ", ".join(
            f"{key} {metrics[key]:.4g}"
            for key in SHOWN
            if isinstance(metrics.get(key), (int, float))
        )
        typer.echo(f"{path}: {summary}")
        for line in metrics.get("warnings") or []:
            typer.secho(line, err=True, fg="red", bold=True)


def register(app: typer.Typer) -> None:
    app.add_typer(sae_app, name="sae")
