"""The ``vsfa`` command: it mounts each stage's commands and nothing else.

Each stage keeps its commands in ``interp/<stage>/commands.py`` with a ``register(app)``; the
command modules import only typer and their configs, and load torch, transformers and sae_lens
inside the command body, so ``vsfa --help`` starts fast. A :class:`~interp.errors.VSFAError` and
a usage error (an option out of its range, an unknown option) are printed as one line (no
traceback, no usage box) with exit code 2.
"""

from __future__ import annotations

import sys

import typer

try:  # typer vendors click from 0.26 on
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer on the user's click
    from click import exceptions as click_errors

from interp import console
from interp.analysis import commands as analysis_commands
from interp.cache import commands as cache_commands
from interp.data import commands as data_commands
from interp.errors import VSFAError, one_line
from interp.eval import commands as eval_commands
from interp.models import commands as models_commands
from interp.monitor import commands as monitor_commands
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
    monitor_commands,
    organism_commands,
):
    stage.register(app)
console.register(app)


def _decoded_file(error: UnicodeDecodeError) -> str:
    """The file a decoding error came from: the innermost open text file or path in its
    traceback (``a file`` when none is found)."""
    import io
    from pathlib import PurePath

    frames, tb = [], error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            if isinstance(value, io.TextIOWrapper):
                return str(value.name)
            if isinstance(value, PurePath):
                return str(value)
    return "a file"


def main() -> None:
    console.setup_console()
    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as error:
        error.show()
        sys.exit(error.exit_code)
    except click_errors.UsageError as error:
        typer.echo(f"error: {one_line(error.format_message())} (see --help)", err=True)
        sys.exit(2)
    except click_errors.ClickException as error:
        typer.echo(f"error: {one_line(error.format_message())}", err=True)
        sys.exit(error.exit_code)
    except typer.Abort:
        typer.echo("Aborted!", err=True)
        sys.exit(1)
    except VSFAError as error:
        typer.echo(f"error: {one_line(str(error))}", err=True)
        sys.exit(2)
    except UnicodeDecodeError as error:  # a reader that assumed UTF-8 without checking
        typer.echo(f"error: {_decoded_file(error)} is not UTF-8 text ({error.reason} at "
                   f"byte {error.start}); save it as UTF-8", err=True)  # fmt: skip
        sys.exit(2)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
