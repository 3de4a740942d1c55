"""Fair comparison of optimizers: equal tuning budgets, seeds, statistics, speedups.

``run_bench(optimizers, tasks, trials, seeds, ...)`` is the Python API behind
``optforge bench``; see :mod:`optforge.bench.run` and ``docs/BENCH.md``.
"""

from .results import BenchResult, Entry
from .run import run_bench

__all__ = ["BenchResult", "Entry", "run_bench"]
