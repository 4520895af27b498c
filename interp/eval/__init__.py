"""Evaluation: batched generation, judges, metrics with confidence intervals."""
