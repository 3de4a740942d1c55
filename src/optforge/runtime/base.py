"""What every evaluation backend shares: the outcome record and the inline backend.

A backend runs :class:`~optforge.search.evaluator.Job` values with a fitness and
hands back :class:`Outcome` records *as they complete* (``take_outcome``);
``take()`` is the search's evaluator protocol on top of it. Every backend keeps
at most ``capacity`` jobs in flight (the caller's contract), turns a failing
candidate into a failed evaluation (``-inf`` with the message), and never lets a
candidate stop the driver.

Statuses: ``ok`` (the fitness returned, whatever its value), ``error`` (the
fitness raised), ``timeout`` (ran past ``timeout`` seconds), ``lost`` (its
worker died ``retries + 1`` times).
"""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass

from ..search.evaluator import Job
from ..search.fitness import Evaluation, Fitness

OK, ERROR, TIMEOUT, LOST = "ok", "error", "timeout", "lost"


@dataclass(frozen=True)
class Outcome:
    """One finished job: its evaluation, status, wall time, worker and attempts."""

    job: Job
    evaluation: Evaluation
    status: str = OK
    seconds: float = 0.0
    worker: str = ""
    attempts: int = 1


def failed(job: Job, status: str, message: str, seconds: float = 0.0, worker: str = "",
           attempts: int = 1) -> Outcome:
    return Outcome(job, Evaluation(-math.inf, error=message), status, seconds, worker, attempts)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_job(fitness: Fitness, job: Job) -> tuple[Evaluation, str, float]:
    """Evaluate in this process: ``(evaluation, status, seconds)``; exceptions become ``error``."""
    start = time.perf_counter()
    try:
        ev = fitness.evaluate(job.program, job.stage, job.thresholds)
        status = OK
    except Exception as err:  # noqa: BLE001 - a failing candidate is a value, not a crash
        tb = traceback.format_exception_only(type(err), err)[-1].strip()
        ev, status = Evaluation(-math.inf, error=tb), ERROR
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
