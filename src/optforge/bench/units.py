"""Every training run of a benchmark, recorded as it finishes and replayed on resume.

The benchmark is a deterministic function of its settings and of the outcomes
of its batched training runs ("units": a tuning batch of ``--batch`` trials,
the final seeds, one budget of the baseline's curve), taken in a fixed order:
Optuna's samplers and pruners are seeded and see the same ``ask``/``report``/
``tell`` sequence. So :class:`Units` numbers the runs as the benchmark asks
for them (``seq`` 0, 1, 2, ...) and, with a run store, keeps them in its
:class:`~optforge.store.Journal` (the one a search's evaluations go through):

* writes each finished run (one transaction) the moment it returns: a SIGKILL
  loses no finished run, and none is recorded twice;
* on resume, the benchmark starts again from the top and every run already in
  the store is *replayed* instead of trained: the stored request must match
  (same unit, optimizer, task, steps, configurations, seeds, program; else
  :class:`~optforge.store.ReplayError`), the ``on_eval`` calls the pruner saw
  are made again with the stored losses (and must give the same stop
  decisions), and the stored result is returned. The Optuna studies are thus
  rebuilt exactly, random states included, and the first run not in the store
  (the one a kill interrupted, if any) is trained from its start.

Why not Optuna's RDB storage for the trials: it keeps the trials but not the
sampler's random state, and a trial left ``RUNNING`` by a kill can only be
failed, not removed, which shifts trial numbers and what TPE sees; the resumed
study would not be the uninterrupted one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import numpy as np

from ..lang.ir import Program
from ..store import Journal, ReplayError, StoreError
from ..store.bench import KIND
from ..store.db import dumps
from ..train import TrainResult
from . import backend
from .backend import OnEval, RunSpec
from .config import STORED_DEFAULTS


class RecordedError(Exception):
    """An exception of the original run, raised again by a replay (same type name, message)."""


_KINDS: dict[str, type] = {}


def _reraise(name: str, message: str) -> RecordedError:
    if name not in _KINDS:
        _KINDS[name] = type(name, (RecordedError,), {})
    return _KINDS[name](message)


class Units:
    """The benchmark's door to :func:`~optforge.bench.backend.train_replicas` (see module doc).

    Without a store it only trains. ``replayed``/``computed`` count the runs;
    ``credit`` is the recorded training time of the replayed runs minus the
    time their replay took, so that wall times reported by a resumed benchmark
    are those of the work, not of the replay.
    """

    def __init__(self, store=None):
        self.store = store
        self.journal = None if store is None else Journal(store)
        self.seq = 0
        self.replayed = self.computed = 0
        self.credit = 0.0

    def begin(self, settings: dict, candidates: Sequence, planned: int,
              planned_base: int) -> None:
        """Check that the store holds this benchmark (its ``settings``) and log its start or
        resumption; the ``candidates`` (resolved optimizers) and the planned runs are kept
        at the first start."""
        store = self.store
        if store is None:
            return
        if store.kind != KIND:
            raise StoreError(f"{store.path} is a {store.kind} run, not a bench run")
        if {**STORED_DEFAULTS, **store.config} != json.loads(dumps(settings)):
            raise ValueError(f"{store.path} holds another benchmark (stored settings "
                             f"{store.config}); resume it with its own settings")
        if store.meta("candidates") is None:
            store.set_meta(candidates=[stored_candidate(c) for c in candidates],
                           planned=planned, planned_base=planned_base)
        store.begin(planned=planned)

    def finish(self, result) -> None:
        """Mark the run finished with the :class:`~optforge.bench.results.BenchResult`'s
        scores and entries (task, optimizer, status, reason)."""
        if self.store is None:
            return
        self.store.finish(meta={
            "scores": result.scores,
            "entries": [[e.task, e.optimizer, e.status, e.reason] for e in result.entries]},
            replayed=self.replayed, computed=self.computed, seconds=result.wall_time)

    def clock(self) -> float:
        """``time.perf_counter()`` plus the replayed runs' recorded time."""
        return time.perf_counter() + self.credit

    def train(self, unit: str, optimizer: str, spec: RunSpec, program: Program,
              configs: Sequence[dict[str, float]], seeds: Sequence[int],
              on_eval: OnEval | None = None) -> TrainResult:
        """Train (or replay) one batched run; arguments as ``train_replicas``'s."""
        seq = self.seq
        self.seq += 1
        request = {"steps": spec.steps, "tier": spec.tier, "evals": spec.evals,
                   "schedule": spec.schedule, "device": spec.device, "program": program.hash,
                   "configs": [dict(sorted(c.items())) for c in configs],
                   "seeds": [int(s) for s in seeds]}
        asked = {"task": spec.task, "optimizer": optimizer, "unit": unit, "request": request}
        if self.journal is not None:
            stored = self.journal.replay(seq, asked)
            if stored is not None:
                return self._replay(seq, stored, on_eval)
        calls: list = []
        watched = None
        if on_eval is not None:
            def watched(step: int, loss: np.ndarray) -> bool:
                stop = bool(on_eval(step, loss))
                calls.append([int(step), [float(v) for v in loss], stop])
                return stop
        t0 = time.perf_counter()
        try:
            res = backend.train_replicas(spec, program, configs, seeds, watched)
        except Exception as err:
            self._record(seq, asked, "raised",
                         {"type": type(err).__name__, "message": str(err), "calls": calls},
                         time.perf_counter() - t0)
            raise
        status = "error" if res.error else "stopped" if res.stopped_at is not None else "ok"
        self._record(seq, asked, status, {**_result_dict(res), "calls": calls},
                     time.perf_counter() - t0)
        return res

    def _record(self, seq: int, asked: dict, status: str, result: dict,
                seconds: float) -> None:
        self.computed += 1
        if self.journal is not None:
            self.journal.record(seq, asked,
                                {"status": status, "result": result, "seconds": seconds})

    def _replay(self, seq: int, stored: dict, on_eval: OnEval | None) -> TrainResult:
        t0 = time.perf_counter()
        task, optimizer, unit = stored["task"], stored["optimizer"], stored["unit"]
        status, result, seconds = stored["status"], stored["result"], stored["seconds"]
        for step, loss, stop in result["calls"]:
            got = on_eval is not None and bool(on_eval(step, np.asarray(loss, dtype=float)))
            if got != stop:
                raise ReplayError(f"{self.store.path}: training run {seq} ({unit} of "
                                  f"{optimizer} on {task}) stopped differently on replay at "
                                  f"step {step}; the code or the settings changed")
        self.replayed += 1
        self.credit += seconds - (time.perf_counter() - t0)
        if status == "raised":
            raise _reraise(result["type"], result["message"])
        return _result_from(result)


def stored_candidate(cand) -> dict:
    """A resolved optimizer as a bench run keeps it (``meta`` ``candidates``)."""
    d = cand.as_dict()
    d["space"] = list(d["space"].items())  # keeps the sampling order through sorted JSON
    return d


def _result_dict(res: TrainResult) -> dict:
    """The run as stored: everything but the per-step training loss."""
    d = res.to_dict()
    d["train_loss"] = []
    d.pop("final_loss")
    d.pop("final_metric")
    return d


def _result_from(d: dict) -> TrainResult:
    return TrainResult.from_dict({k: v for k, v in d.items() if k != "calls"})
