"""Fair comparison of optimizers: equal tuning budgets, seeds, statistics, speedups.

``run_bench(BenchConfig(optimizers, tasks, trials=..., seeds=...))`` is the Python API
behind ``optforge bench``; see :mod:`optforge.bench.run` and ``docs/BENCH.md``;
``create_run``/``resume_bench`` (:mod:`optforge.bench.stored`) keep it in a run store.
Attributes load on first use, so that ``optforge`` starts without optuna and scipy.
"""

from __future__ import annotations

from importlib import import_module

_LAZY = {"run_bench": ".run", "BenchConfig": ".config", "BenchResult": ".results",
         "Entry": ".results", "create_run": ".stored", "resume_bench": ".stored"}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
