"""Performance measurements of attention-sweeper (not tests): ``python -m benchmarks all [--quick]``.

One module per measurement, each with ``measure(size, out) -> Outcome`` and its sizes (``tiny``
for the smoke test, ``quick``, ``default``); :mod:`benchmarks.common` holds what they share.
Method and latest numbers: BENCHMARKS.md at the repository root.
"""
from __future__ import annotations

MEASUREMENTS = ("orchestration", "scale", "trainable", "promotion", "attention", "latency", "learning", "calibration", "search_quality", "synthetic_search", "pareto")
