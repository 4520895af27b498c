"""The organism as a plug-in: importing this module registers its benchmark and its judge.

Declared under the ``interp.plugins`` entry point in ``pyproject.toml``; the registries of
:mod:`interp.registry` import it the first time they are asked for a name they do not hold.
"""

from __future__ import annotations

import interp.organism.benchmarks  # noqa: F401  (registers the ``organism`` benchmark)
import interp.organism.judge  # noqa: F401  (registers the ``organism`` judge)
