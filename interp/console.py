"""The terminal the ``vsfa`` command writes to: quiet mode and help that fits 80 columns.

:func:`setup_console` runs before any command (``interp.cli.main``):

* ``-q`` / ``--quiet`` anywhere on the command line (before ``--``; ``vsfa -q COMMAND`` for a
  command without its own ``-q``, :func:`register`) silences what libraries
  print on their own: transformers' and huggingface_hub's progress bars ("Loading weights"),
  their logging below errors, and Python warnings (FutureWarning, UserWarning,
  DeprecationWarning). It sets the environment variables those libraries read at import, and
  switches them off directly when already imported. The command's own output is untouched.
* On a terminal narrower than :data:`RICH_MIN_COLUMNS` the help is click's plain layout, which
  wraps option names and help text instead of cutting them (typer's boxed tables truncate
  ``--questions-per-…`` at 80 columns).
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from collections.abc import Sequence

import typer

QUIET_FLAGS = ("-q", "--quiet")
RICH_MIN_COLUMNS = 100
QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
SILENCED = (FutureWarning, UserWarning, DeprecationWarning)


def wants_quiet(argv: Sequence[str]) -> bool:
    """Whether ``argv`` asks for quiet (``-q`` or ``--quiet`` before a ``--``)."""
    for arg in argv:
        if arg == "--":
            return False
        if arg in QUIET_FLAGS:
            return True
    return False


def quiet_libraries() -> None:
    """Silence transformers' and huggingface_hub's progress bars, logging and warnings."""
    os.environ.update(QUIET_ENV)
    for category in SILENCED:
        warnings.filterwarnings("ignore", category=category)
    if "transformers" in sys.modules:
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def plain_help_if_narrow(columns: int | None = None) -> bool:
    """Use click's wrapping help layout on a narrow terminal; returns whether it did."""
    width = columns if columns is not None else shutil.get_terminal_size((80, 24)).columns
    if width >= RICH_MIN_COLUMNS:
        return False
    import typer.core

    typer.core.HAS_RICH = False
    return True


def setup_console(argv: Sequence[str] | None = None) -> bool:
    """Quiet mode when ``argv`` (default ``sys.argv[1:]``) asks for it, and help that fits the
    terminal; returns whether quiet is on."""
    argv = sys.argv[1:] if argv is None else argv
    plain_help_if_narrow()
    quiet = wants_quiet(argv)
    if quiet:
        quiet_libraries()
    return quiet


def register(app: typer.Typer) -> None:
    """``vsfa -q COMMAND``: quiet for every command, also those without their own ``-q``."""

    @app.callback()
    def _root(
        quiet: bool = typer.Option(
            False, "--quiet", "-q", help="no library progress bars, logging or warnings"
        ),
    ) -> None:
        if quiet:
            quiet_libraries()
