"""Every training run of a benchmark, recorded as it finishes and replayed on resume.

The benchmark is a deterministic function of its settings and of the outcomes
of its batched training runs ("units": a tuning batch of ``--batch`` trials,
the final seeds, one budget of the baseline's curve), taken in a fixed order:
Optuna's samplers and pruners are seeded and see the same ``ask``/``report``/
``tell`` sequence. So :class:`Units` numbers the runs as the benchmark asks
for them (``seq`` 0, 1, 2, ...) and, with a run store:

* writes each finished run (one transaction) the moment it returns: a SIGKILL
  loses no finished run, and ``seq`` being the primary key, none is recorded
  twice;
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

import time
from collections.abc import Sequence

import numpy as np

from ..lang.ir import Program
from ..train import TrainResult
from . import backend
from .backend import OnEval, RunSpec


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
        self.seq = 0
        self.replayed = self.computed = 0
        self.credit = 0.0

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
        if self.store is not None:
            from ..store.bench import unit_at

            stored = unit_at(self.store, seq)
            if stored is not None:
                return self._replay(seq, stored, (spec.task, optimizer, unit, request),
                                    on_eval)
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
            self._record(seq, spec.task, optimizer, unit, request, "raised",
                         {"type": type(err).__name__, "message": str(err), "calls": calls},
                         time.perf_counter() - t0)
            raise
        status = "error" if res.error else "stopped" if res.stopped_at is not None else "ok"
        self._record(seq, spec.task, optimizer, unit, request, status,
                     {**_result_dict(res), "calls": calls}, time.perf_counter() - t0)
        return res

    def _record(self, seq, task, optimizer, unit, request, status, result, seconds) -> None:
        self.computed += 1
        if self.store is not None:
            from ..store.bench import record_unit

            record_unit(self.store, seq, task, optimizer, unit, request, status, result,
                        seconds)

    def _replay(self, seq: int, stored, want: tuple, on_eval: OnEval | None) -> TrainResult:
        from ..store import ReplayError
        from ..store.bench import dumps

        t0 = time.perf_counter()
        task, optimizer, unit, request, status, result, seconds = stored
        have = (task, optimizer, unit, request)
        if dumps(have) != dumps(want):
            raise ReplayError(
                f"{self.store.path}: training run {seq} was {unit} of {optimizer} on {task} "
                f"in the stored benchmark but is {want[2]} of {want[1]} on {want[0]} now (or "
                "its configurations, seeds or program differ); the code or the settings "
                "changed")
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


def _result_dict(res: TrainResult) -> dict:
    """The run as stored: everything but the per-step training loss."""
    d = res.to_dict()
    d["train_loss"] = []
    d.pop("final_loss")
    d.pop("final_metric")
    return d


def _result_from(d: dict) -> TrainResult:
    return TrainResult.from_dict({k: v for k, v in d.items() if k != "calls"})
