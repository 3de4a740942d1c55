"""What every evaluation backend shares, and the inline backend.

A backend runs :class:`~optforge.evaluation.Job` values with a fitness and
hands back :class:`~optforge.evaluation.Outcome` records *as they complete*
(``take_outcome``); ``take()`` is the :class:`~optforge.evaluation.Evaluator`
protocol on top of it. Every backend keeps
at most ``capacity`` jobs in flight (the caller's contract), turns a failing
candidate into a failed evaluation (``-inf`` with the message), and never lets a
candidate stop the driver.

Statuses (:mod:`optforge.evaluation`): ``ok`` (the fitness returned an evaluation
without an error, whatever its value), ``error`` (the fitness raised, or returned an
evaluation with an ``error``), ``timeout`` (ran past ``timeout`` seconds),
``lost`` (its worker died ``retries + 1`` times).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import traceback
from collections import deque

from ..evaluation import ERROR, OK, TIMEOUT, WORST, Evaluation, Fitness, Job, Outcome, failed


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_job(fitness: Fitness, job: Job) -> tuple[Evaluation, str, float]:
    """Evaluate in this process: ``(evaluation, status, seconds)``; an exception, or an
    evaluation carrying an ``error``, is status ``error`` (never reused by a cache)."""
    start = time.perf_counter()
    try:
        ev = fitness.evaluate(job.program, job.stage, job.thresholds)
        status = OK if ev.error is None else ERROR
    except Exception as err:  # noqa: BLE001 - a failing candidate is a value, not a crash
        tb = traceback.format_exception_only(type(err), err)[-1].strip()
        ev, status = Evaluation(WORST, error=tb), ERROR
    return ev, status, time.perf_counter() - start


class _Timeout(BaseException):
    pass


class InlineBackend:
    """Evaluates in the calling process, oldest job first, when a result is taken.

    ``capacity`` only sets how many jobs the search keeps queued (so an inline run
    makes the same decisions as a pool of that many workers). ``timeout`` uses
    ``SIGALRM`` (main thread, POSIX only): it interrupts Python code, not a long
    native call. There is no worker to lose, so there are no retries.
    """

    def __init__(self, fitness: Fitness, capacity: int = 1, timeout: float = 0.0):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.fitness, self.capacity, self.timeout = fitness, capacity, timeout
        self._queue: deque[Job] = deque()

    def submit(self, job: Job) -> None:
        self._queue.append(job)

    def pending(self) -> int:
        return len(self._queue)

    def take_outcome(self) -> Outcome:
        if not self._queue:
            raise RuntimeError("take() with no job in flight")
        job = self._queue.popleft()
        alarm = (self.timeout > 0 and hasattr(signal, "setitimer")
                 and threading.current_thread() is threading.main_thread())
        if not alarm:
            ev, status, sec = run_job(self.fitness, job)
            return Outcome(job, ev, status, sec, worker_name())

        def ring(signum, frame):
            raise _Timeout

        old = signal.signal(signal.SIGALRM, ring)
        start = time.perf_counter()
        try:
            signal.setitimer(signal.ITIMER_REAL, self.timeout)
            ev, status, sec = run_job(self.fitness, job)
        except _Timeout:
            return failed(job, TIMEOUT, f"timed out after {self.timeout:g} s",
                          time.perf_counter() - start, worker_name())
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        return Outcome(job, ev, status, sec, worker_name())

    def take(self) -> tuple[Job, Evaluation]:
        o = self.take_outcome()
        return o.job, o.evaluation

    def close(self) -> None:
        self._queue.clear()
