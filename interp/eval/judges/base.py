"""The judge interface: every judge turns (item, response) pairs into verdicts.

Judges are registered by name in :data:`JUDGES`, so the CLI (``--judge NAME[:ARG]``) and
plug-ins (through the ``interp.plugins`` entry point) add judges without changes to the
evaluation code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from interp.data.records import BenchmarkItem
from interp.eval.matching import match_answer
from interp.registry import Registry

Outcome = Literal["comply", "refuse", "other"]
OUTCOMES: tuple[Outcome, ...] = ("comply", "refuse", "other")


@dataclass(frozen=True)
class Verdict:
    """A judge's reading of one response.

    ``refused``: the response declines the request. ``unsafe``: it gives what a harmful request
    asked for (an attack success; only meaningful on harmful items). ``quality``: 0-1 score of
    the response (for CS on harmful items: 0 harmful, low a bare refusal, high a safe and
    constructive answer), ``None`` when the judge does not score. ``correct``: for items with a
    reference answer, whether the response matches it, else ``None``. ``label``: the judge's
    short label (``comply``, ``refuse``, ``constructive_refusal`` ...). ``outcome``: the
    three-way reading, ``comply`` (helps or complies), ``refuse`` (constructive or bare) or
    ``other`` (an image description, a malformed reply, anything else); ``None`` when the judge
    cannot tell ``other`` apart (it then only knows ``refused``).
    """

    refused: bool
    unsafe: bool
    quality: float | None = None
    correct: bool | None = None
    label: str = ""
    outcome: Outcome | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Judge(Protocol):
    name: str

    def config(self) -> dict[str, Any]:
        """Everything that decides the verdicts (for the results' manifest)."""
        ...

    def judge(self, items: Sequence[BenchmarkItem], responses: Sequence[str]) -> list[Verdict]: ...


JudgeFactory = Callable[[str | None], Judge]
JUDGES: Registry[JudgeFactory] = Registry("judge")
"""Judge factories by name: ``@JUDGES.register(NAME)`` on ``factory(arg)`` makes it available
as ``--judge NAME`` or ``--judge NAME:ARG``."""


def get_judge(spec: str) -> Judge:
    """``keyword``, ``keyword:FILE``, ``llm:/path/to/model``, a plug-in's name ... -> a judge."""
    name, _, arg = spec.partition(":")
    return JUDGES.get(name)(arg or None)


def reference_match(item: BenchmarkItem, response: str) -> bool | None:
    """Whether ``response`` gives ``item``'s reference answer; ``None`` without a reference."""
    return None if item.reference is None else match_answer(item.reference, response)
