"""One registry helper for everything looked up by name: benchmarks, judges, families, steering
modes, worlds.

Each stage owns its registry (``BENCHMARKS = Registry("benchmark")``) and its built-in entries
register themselves on import. Plug-ins (the model organism among them) are Python packages that
declare an ``interp.plugins`` entry point; the module it names registers its entries, and is
imported the first time any registry is asked for a name it does not hold, so no stage needs to
know which plug-ins exist.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from interp.errors import VSFAError

T = TypeVar("T")

PLUGIN_GROUP = "interp.plugins"
_plugins_loaded = False


def load_plugins() -> None:
    """Import every module declared under the ``interp.plugins`` entry-point group, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True  # before importing: a plug-in that looks itself up must not recurse
    from importlib.metadata import entry_points

    for entry in entry_points(group=PLUGIN_GROUP):
        entry.load()


def nearest(name: str, known: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest known name, or ``""``."""
    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class Registry(Generic[T]):
    """Named entries of one kind; ``get`` of an unknown name is one clear :class:`VSFAError`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` as ``name`` (a second entry under one name is a bug)."""
        existing = self._entries.get(name)
        if existing is not None and existing is not entry:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda entry: self.add(name, entry)

    def get(self, name: str) -> T:
        if name not in self._entries:
            load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            known = self.names()
            listed = ", ".join(known) or "(none registered)"
            raise VSFAError(
                f"unknown {self.kind} {name!r}{nearest(name, known)} (known: {listed})"
            ) from None

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        load_plugins()
        return sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        if name not in self._entries:
            load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
