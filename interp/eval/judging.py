"""The judge interface: every judge turns (item, response) pairs into verdicts.

Judges are registered by name so the CLI (``--judge NAME[:ARG]``) and other stages (the
organism's exact judge) plug in without changes to the evaluation code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from interp.data.records import BenchmarkItem
from interp.errors import VSFAError


@dataclass(frozen=True)
class Verdict:
    """A judge's reading of one response.

    ``refused``: the response declines the request. ``unsafe``: it gives what a harmful request
    asked for (an attack success; only meaningful on harmful items). ``quality``: 0-1 score of
    the response (for CS on harmful items: 0 harmful, low a bare refusal, high a safe and
    constructive answer), ``None`` when the judge does not score. ``correct``: for items with a
    reference answer, whether the response matches it, else ``None``. ``label``: the judge's
    short label (``comply``, ``refuse``, ``constructive_refusal`` ...).
    """

    refused: bool
    unsafe: bool
    quality: float | None = None
    correct: bool | None = None
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Judge(Protocol):
    name: str

    def config(self) -> dict[str, Any]:
        """Everything that decides the verdicts (for the results' manifest)."""
        ...

    def judge(self, items: Sequence[BenchmarkItem], responses: Sequence[str]) -> list[Verdict]: ...


JudgeFactory = Callable[[str | None], Judge]
JUDGES: dict[str, JudgeFactory] = {}


def register_judge(name: str) -> Callable[[JudgeFactory], JudgeFactory]:
    """Decorator: make ``factory(arg)`` available as ``--judge NAME`` or ``--judge NAME:ARG``."""

    def decorate(factory: JudgeFactory) -> JudgeFactory:
        JUDGES[name] = factory
        return factory

    return decorate


def get_judge(spec: str) -> Judge:
    """``keyword``, ``llm:/path/to/model``, ``organism`` ... -> a judge."""
    name, _, arg = spec.partition(":")
    try:
        factory = JUDGES[name]
    except KeyError:
        known = ", ".join(sorted(JUDGES)) or "(none registered)"
        raise VSFAError(f"unknown judge {name!r}; known judges: {known}") from None
    return factory(arg or None)
