"""The ``vsfa`` command: it mounts each stage's commands and nothing else.

Each stage keeps its commands in ``interp/<stage>/commands.py`` with a ``register(app)``; the
command modules import only typer and their configs, and load torch, transformers and sae_lens
inside the command body, so ``vsfa --help`` starts fast. A :class:`~interp.errors.VSFAError` is
printed as one line (no traceback) with exit code 2.
"""

from __future__ import annotations

import sys

import typer

from interp.analysis import commands as analysis_commands
from interp.cache import commands as cache_commands
from interp.data import commands as data_commands
from interp.errors import VSFAError
from interp.eval import commands as eval_commands
from interp.models import commands as models_commands
from interp.organism import commands as organism_commands
from interp.persona import commands as persona_commands
from interp.pipeline import commands as pipeline_commands
from interp.sae import commands as sae_commands
from interp.steer import commands as steer_commands
from interp.train import commands as train_commands
from interp.viz import commands as viz_commands

app = typer.Typer(
    name="vsfa",
    help="VSFA workbench: train, evaluate, cache, SAE, diff, steer and show VLM safety.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# In the order of the data flow; `vsfa --help` lists them so.
for stage in (
    pipeline_commands,
    models_commands,
    data_commands,
    train_commands,
    eval_commands,
    cache_commands,
    sae_commands,
    analysis_commands,
    persona_commands,
    steer_commands,
    viz_commands,
    organism_commands,
):
    stage.register(app)


def main() -> None:
    try:
        app()
    except VSFAError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
