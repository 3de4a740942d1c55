"""The recording evaluator: every result into the run's journal as it completes, replay on resume.

:class:`RecordingEvaluator` sits between the search and a backend. Jobs get a
submission number ``seq`` (0, 1, 2, ... in the order the search submits them),
their number in the store's :class:`~optforge.store.journal.Journal`.

* A result is journaled the moment the backend reports it (in completion
  order, one transaction each), so a SIGKILL loses no finished evaluation.
* The search receives results in *submission* order. Its decisions are then a
  function of (config, seed, results), whatever the workers' timing, and a
  resumed run that replays the same submissions reproduces them exactly.
* On resume, a submitted job whose ``seq`` is already journaled is answered
  from the store (after checking that it is the same program, stage and
  hurdle thresholds: otherwise :class:`~optforge.store.ReplayError`), untrained.
* ``caches`` (other runs' stores, ``--cache-from``) answer a job whose program
  (canonical hash) has a complete evaluation on the same stage there; the
  answer is recorded in this run with ``source = "cache:DIR"``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

from ..evaluation import ERROR, OK, Evaluation, Evaluator, Job, Outcome
from ..store import Journal, RunStore
from .base import worker_name


class RecordingEvaluator:
    """An :class:`~optforge.evaluation.Evaluator` over ``backend`` that journals into
    ``store`` (see the module doc); ``capacity`` defaults to the backend's."""

    def __init__(self, store: RunStore, backend: Evaluator, caches: Sequence[RunStore] = (),
                 capacity: int | None = None):
        self.store, self.backend, self.caches = store, backend, list(caches)
        self.journal = Journal(store)
        self.capacity = capacity or backend.capacity
        self._order: deque[int] = deque()
        self._seq_of: dict[int, tuple[int, Job]] = {}  # id(job) -> (seq, job)
        self._ready: dict[int, tuple[Job, Evaluation]] = {}
        self._next = 0
        self.replayed = self.computed = self.reused = 0

    def submit(self, job: Job) -> None:
        seq = self._next
        self._next += 1
        self._order.append(seq)
        stored = self.journal.replay_job(seq, job)
        if stored is not None:
            self._ready[seq] = (job, stored)
            self.replayed += 1
            return
        for cache in self.caches:
            ev = cache.cached(job.program.hash, job.stage)
            if ev is not None:
                self.journal.record_outcome(seq, Outcome(job, ev, OK, 0.0, worker_name()),
                                            source=f"cache:{cache.path}")
                self._ready[seq] = (job, ev)
                self.reused += 1
                return
        self._seq_of[id(job)] = (seq, job)
        self.backend.submit(job)

    def _pull(self) -> None:
        outcome = _take_outcome(self.backend)
        seq, _ = self._seq_of.pop(id(outcome.job))
        self.journal.record_outcome(seq, outcome)
        self._ready[seq] = (outcome.job, outcome.evaluation)
        self.computed += 1

    def take(self) -> tuple[Job, Evaluation]:
        if not self._order:
            raise RuntimeError("take() with no job in flight")
        head = self._order[0]
        while head not in self._ready:
            self._pull()
        self._order.popleft()
        return self._ready.pop(head)

    def pending(self) -> int:
        return len(self._order)

    def close(self) -> None:
        self.backend.close()


def _take_outcome(backend) -> Outcome:
    if hasattr(backend, "take_outcome"):
        return backend.take_outcome()
    start = time.perf_counter()  # a plain Evaluator (the protocol has no take_outcome)
    job, ev = backend.take()
    return Outcome(job, ev, OK if ev.error is None else ERROR, time.perf_counter() - start,
                   worker_name())
