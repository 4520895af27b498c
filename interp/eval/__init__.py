"""Evaluation: batched generation, judges (:mod:`interp.eval.judges`), metrics with confidence
intervals, result tables."""
