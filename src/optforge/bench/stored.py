"""Bench runs in the run store: create, resume, and the run's bookkeeping.

``optforge bench ... --out RUN_DIR`` is :func:`create_run` then
:func:`~optforge.bench.run.run_bench` with the store; ``optforge bench --resume
RUN_DIR`` is :func:`resume_bench`. The stored config is the benchmark's
settings (:meth:`~optforge.bench.config.BenchConfig.as_dict`), the stored candidates the
optimizers as resolved at creation (a resumed run reads no program file), and
every batched training run is recorded by :class:`~optforge.bench.units.Units`
(see there, and ``optforge.store.bench`` for the table).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..store import RunStore, StoreError
from ..store.bench import KIND, SCHEMA, dumps
from .config import BenchConfig
from .results import BenchResult
from .run import Plan, Progress, plan_bench, run_bench
from .units import Units


def _stored(cand) -> dict:
    d = cand.as_dict()
    d["space"] = list(d["space"].items())  # keeps the sampling order through sorted JSON
    return d


def create_run(run_dir: str | Path, config: BenchConfig) -> RunStore:
    """A new bench run in ``run_dir`` (new or empty) for ``config``, checked first: bad
    settings raise ValueError/KeyError and create nothing."""
    plan = plan_bench(config)
    return RunStore.create(run_dir, KIND, plan.settings, schema=SCHEMA,
                           candidates=[_stored(c) for c in plan.candidates],
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
        return run_bench(BenchConfig.from_dict(store.config), store=store, out_dir=store.path,
                         plots=plots, progress=progress)


def begin(store: RunStore, plan: Plan) -> None:
    """Check that ``store`` is this benchmark's run and log its start or resumption."""
    if store.kind != KIND:
        raise StoreError(f"{store.path} is a {store.kind} run, not a bench run")
    if store.config != json.loads(dumps(plan.settings)):
        raise ValueError(f"{store.path} holds another benchmark (stored settings "
                         f"{store.config}); resume it with its own settings")
    if store.meta("candidates") is None:
        store.set_meta(candidates=[_stored(c) for c in plan.candidates], planned=plan.units,
                       planned_base=plan.base_units)
    started = next(store.rows("SELECT COUNT(*) FROM events WHERE kind='start'"))[0]
    if started:
        store.set_meta(status="running")
        store.event("resume", recorded=store.count("units"))
    else:
        store.event("start", planned=plan.units)


def finish(store: RunStore, result: BenchResult, units: Units) -> None:
    store.set_meta(status="finished", finished=time.time(), scores=result.scores,
                   entries=[[e.task, e.optimizer, e.status, e.reason] for e in result.entries])
    store.event("finish", replayed=units.replayed, computed=units.computed,
                seconds=result.wall_time, store_seconds=store.seconds)
