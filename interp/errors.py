"""User-facing errors.

A :class:`VSFAError` means the user gave the workbench something it cannot use (a missing file,
a hook the model lacks, a malformed benchmark folder). The CLI prints its message alone, without a
traceback; library callers can catch it. Bugs stay ordinary exceptions.
"""

from __future__ import annotations


class VSFAError(Exception):
    """A clear, single-message error about user input (file, field, option)."""


class UnsupportedFamilyError(VSFAError):
    """The model's architecture is not one of the supported VLM families."""


class HookNameError(VSFAError):
    """A hook name that the loaded model does not have."""


def one_line(message: str) -> str:
    """A message on one line (a library's multi-line text joined with spaces)."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def warn(message: str) -> None:
    """Tell the user about something the workbench worked around (one line on stderr)."""
    import sys

    print(f"warning: {one_line(message)}", file=sys.stderr)
