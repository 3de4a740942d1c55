"""Bench runs in the run store: create, resume, run.

``optforge bench ... --out RUN_DIR`` is :func:`create_run` then :func:`run_stored`
(:func:`~optforge.bench.run.run_bench` with the store); ``optforge bench --resume
RUN_DIR`` is :func:`open_run` and the same (:func:`resume_bench` in one call).
The stored config is the benchmark's settings
(:meth:`~optforge.bench.config.BenchConfig.as_dict`), the stored candidates the
optimizers as resolved at creation (a resumed run reads no program file), and every
batched training run is recorded by :class:`~optforge.bench.units.Units` (see there:
it also logs the run's start, resumptions and finish).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..store import RunStore, StoreError
from ..store.bench import KIND, SCHEMA
from .config import BenchConfig
from .results import BenchResult
from .run import Progress, plan_bench, run_bench
from .units import stored_candidate


def create_run(run_dir: str | Path, config: BenchConfig) -> RunStore:
    """A new bench run in ``run_dir`` (new or empty) for ``config``, checked first: bad
    settings raise ValueError/KeyError and create nothing."""
    plan = plan_bench(config)
    return RunStore.create(run_dir, KIND, plan.settings, schema=SCHEMA,
                           candidates=[stored_candidate(c) for c in plan.candidates],
                           planned=plan.units, planned_base=plan.base_units)


def open_run(run_dir: str | Path) -> RunStore:
    """An existing bench run (StoreError, nothing written, if it is not one)."""
    store = RunStore.open(run_dir)
    kind = store.kind
    if kind != KIND:
        store.close()
        raise StoreError(f"{run_dir} is a {kind} run, not a bench run")
    return store


def resume_bench(run_dir: str | Path, *, plots: bool = True,
                 progress: Progress | None = None) -> BenchResult:
    """Continue (or re-read, if finished) the bench run in ``run_dir``; outputs go there."""
    with open_run(run_dir) as store:
        return run_stored(store, plots=plots, progress=progress)


def run_stored(store: RunStore, **options: Any) -> BenchResult:
    """Run (or continue) the bench run in ``store`` with its stored settings; outputs go to
    its directory. ``options``: :func:`~optforge.bench.run.run_bench`'s ``plots``,
    ``progress``, ``on_entry``."""
    return run_bench(BenchConfig.stored(store.config), store=store, out_dir=store.path,
                     **options)
