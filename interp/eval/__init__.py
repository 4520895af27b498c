"""Evaluation: batched generation, judges, metrics with confidence intervals.

Importing the package registers the built-in judges (``keyword``, ``llm``) in
:mod:`interp.eval.judging`.
"""

from interp.eval import judges as _judges  # noqa: F401  (registers the built-in judges)
