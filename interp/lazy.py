"""Package attributes imported on first use (PEP 562), so importing a package stays light.

A package's ``__init__`` names where each public name lives and lets this build its module
``__getattr__``::

    _HOME = {"write_dashboard": "interp.viz.dashboard"}
    __all__ = sorted(_HOME)
    __getattr__ = lazy_getattr(__name__, _HOME)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_getattr(package: str, home: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``home[name]`` (a module path) when ``name`` is
    first read from ``package``."""

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(home[name]), name)

    return __getattr__
