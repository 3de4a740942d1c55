"""The process-pool backend: one long-lived worker process per slot, one pipe each.

Why not ``concurrent.futures.ProcessPoolExecutor``: when one of its workers
dies the whole pool breaks and every in-flight future fails, so the pool cannot
say *which* evaluation killed it. Here each worker owns one pipe and runs one job
at a time, so the driver knows exactly which job a dead worker held:

* a worker that dies (SIGKILL, OOM killer, segfault) is replaced and its job is
  resubmitted, up to ``retries`` times; then the job is recorded ``lost``;
* a job running longer than ``timeout`` seconds gets its worker killed (SIGKILL)
  and is recorded ``timeout`` (a hang is not retried: it would hang again);
* an exception inside the fitness is a failed evaluation (``error``), and the
  worker carries on.

Workers start from a fork server (``forkserver`` context: a clean single-threaded
process that imported torch once, so a worker starts in milliseconds and inherits
no threads or locks from the driver; a fitness that trains on a GPU gets
``spawn``, :func:`start_method`), set
``torch.set_num_threads(1)`` and receive the fitness once, pickled; they exit
when the driver closes the pipe or dies (EOF on the pipe). The server also
runs a forward pass of each of the fitness's tasks (:mod:`._warm`), so their data
sets are built once there, not in every worker.

Jobs in flight: ``capacity = workers + queue`` (``queue`` default
``QUEUE_PER_WORKER x workers``). The queued jobs go to the first worker that frees
up (at once, inside ``take_outcome``), so that a worker does not idle while the
search waits, in submission order, for an older result (docs/RUNS.md, "Jobs in
flight").
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import time
from collections import deque
from multiprocessing.connection import wait

from ..evaluation import LOST, TIMEOUT, Evaluation, Fitness, Job, Outcome, failed
from .base import run_job, worker_name

WARM_TASKS = "OPTFORGE_WARM_TASKS"  # environment variable read by ._warm in the fork server
PRELOAD = ["torch", "optforge.runtime.pool", "optforge.search.fitness", "optforge.optim",
           "optforge.train", "optforge.tasks", "optforge.runtime._warm"]
QUEUE_PER_WORKER = 3
"""Default queued jobs per worker: a worker idles only when all of the queue after the
oldest job is done before it, and hurdle-stopped evaluations can be 10 to 50 times
shorter than complete ones (docs/RUNS.md, "Jobs in flight")."""


def warm_tasks(fitness) -> list[str]:
    """``TIER:TASK`` of every task in the fitness's stages (none for other fitnesses)."""
    stages = getattr(fitness, "stages", None)
    if not isinstance(stages, dict):
        return []
    out = []
    for stage in stages.values():
        for task in getattr(stage, "tasks", ()):
            spec = f"{stage.size}:{task}"
            if spec not in out:
                out.append(spec)
    return out


def start_method(fitness) -> str:
    """``spawn`` when the fitness trains on an accelerator (its ``device`` is not the CPU),
    else ``forkserver``. Workers forked from the fork server failed every CUDA evaluation with
    ``CUDA error: initialization error`` (seen on an H200, while the warm-up still ran a
    backward pass, which starts autograd's CUDA device threads); CUDA's own rule is that a
    process forked from one that initialised it cannot use it, so GPU workers are spawned:
    each imports torch and builds its tasks' data itself."""
    import torch

    cpu = torch.device(getattr(fitness, "device", "cpu")).type == "cpu"
    return "forkserver" if cpu else "spawn"


def _serve(conn, fitness: Fitness, threads: int) -> None:  # pragma: no cover - in a child
    import torch

    torch.set_num_threads(threads)
    name = worker_name()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            conn.send(None)  # started: the timeout counts from here, not from the spawn
            ev, status, sec = run_job(fitness, job)
            conn.send((job.key, ev, status, sec, name))
        except (BrokenPipeError, OSError):
            return


class _Worker:
    def __init__(self, ctx, fitness: Fitness, threads: int):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, fitness, threads), daemon=True)
        self.proc.start()  # the first start launches the fork server, which read WARM_TASKS
        os.environ.pop(WARM_TASKS, None)  # so later children (e.g. a local Ray) don't warm up
        child.close()
        self.job: Job | None = None
        self.attempts = 0
        self.started = math.inf  # when the worker acknowledged the job
        self.sent = 0.0  # when the job was sent

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.conn.send(None)
        self.proc.join(timeout=0 if kill else 5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


class ProcessBackend:
    """Evaluate jobs in ``workers`` processes (default: one per core); see the module docstring.

    ``capacity`` (the jobs the search keeps in flight) is ``workers + queue``; ``queue``
    (default ``QUEUE_PER_WORKER x workers``) jobs wait in the driver and go to the first worker that
    frees up, so that no worker idles while the search waits for an older result.
    ``busy`` sums, over jobs, the time from dispatch to result (utilisation =
    ``busy / (wall * workers)``).

    ``context`` (default :func:`start_method`): ``spawn`` for a fitness that trains on a GPU,
    else ``forkserver``.
    """

    def __init__(self, fitness: Fitness, workers: int | None = None, timeout: float = 0.0,
                 retries: int = 2, context: str | None = None, threads: int = 1,
                 queue: int | None = None):
        context = context or start_method(fitness)
        self.workers = workers or os.cpu_count() or 1
        self.queue = QUEUE_PER_WORKER * self.workers if queue is None else queue
        if self.workers < 1 or self.queue < 0 or retries < 0 or timeout < 0:
            raise ValueError("workers must be >= 1, queue, retries and timeout >= 0")
        self.capacity = self.workers + self.queue
        self.fitness, self.timeout, self.retries, self.threads = fitness, timeout, retries, threads
        self._ctx = mp.get_context(context)
        if context == "forkserver":  # import torch once in the server; workers fork from it
            warm = warm_tasks(fitness)
            if warm:  # read by _warm in the server, if this pool is the one that starts it
                os.environ[WARM_TASKS] = ",".join(warm)
            self._ctx.set_forkserver_preload(PRELOAD)
        self._idle: list[_Worker] = []
        self._busy: list[_Worker] = []
        self._queue: deque[tuple[Job, int]] = deque()
        self._done: deque[Outcome] = deque()
        self.deaths = 0
        self.busy = 0.0

    # ---- workers
    def _worker(self) -> _Worker | None:
        while self._idle:
            w = self._idle.pop()
            if w.proc.is_alive():
                return w
            w.stop(kill=True)
        if len(self._busy) < self.workers:
            return _Worker(self._ctx, self.fitness, self.threads)
        return None

    def _dispatch(self) -> None:
        while self._queue:
            w = self._worker()
            if w is None:
                return
            job, attempts = self._queue.popleft()
            try:
                w.conn.send(job)
            except (BrokenPipeError, OSError):  # died while idle: not the job's fault
                w.stop(kill=True)
                self._queue.appendleft((job, attempts))
                continue
            w.job, w.attempts, w.started = job, attempts, math.inf
            w.sent = time.perf_counter()
            self._busy.append(w)

    def _lost(self, w: _Worker, why: str) -> None:
        self._busy.remove(w)
        w.proc.join(timeout=1)
        code = w.proc.exitcode
        w.stop(kill=True)
        self.deaths += 1
        job, attempts = w.job, w.attempts
        if attempts > self.retries:
            self._done.append(failed(job, LOST, f"worker died ({why}, exit code {code}) on "
                                     f"{attempts} attempts", worker=f"pid {w.proc.pid}",
                                     attempts=attempts))
        else:
            self._queue.appendleft((job, attempts + 1))

    # ---- the protocol
    def submit(self, job: Job) -> None:
        self._queue.append((job, 1))
        self._dispatch()

    def pending(self) -> int:
        return len(self._queue) + len(self._busy) + len(self._done)

    def take_outcome(self) -> Outcome:
        while not self._done:
            self._dispatch()
            if not self._busy:
                raise RuntimeError("take() with no job in flight")
            limit = None
            if self.timeout and any(w.started < math.inf for w in self._busy):
                now = time.perf_counter()
                limit = max(0.0, min(w.started + self.timeout - now for w in self._busy))
            handles = [w.conn for w in self._busy] + [w.proc.sentinel for w in self._busy]
            ready = set(wait(handles, limit))
            for w in list(self._busy):
                if w.conn in ready:
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        self._lost(w, "pipe closed")
                        continue
                    if msg is None:  # the worker started the job
                        w.started = time.perf_counter()
                        continue
                    key, ev, status, sec, name = msg
                    self._busy.remove(w)
                    self._done.append(Outcome(w.job, ev, status, sec, name, w.attempts))
                    self.busy += time.perf_counter() - w.sent
                    w.job, w.started = None, math.inf
                    self._idle.append(w)
                elif w.proc.sentinel in ready:
                    self._lost(w, "process ended")
            self._dispatch()  # a freed worker takes the next queued job now, not at the next call
            if self.timeout:
                now = time.perf_counter()
                for w in list(self._busy):
                    if now - w.started >= self.timeout:
                        self._busy.remove(w)
                        w.stop(kill=True)
                        self._done.append(failed(w.job, TIMEOUT,
                                                 f"timed out after {self.timeout:g} s",
                                                 now - w.started, f"pid {w.proc.pid}",
                                                 w.attempts))
        return self._done.popleft()

    def take(self) -> tuple[Job, Evaluation]:
        o = self.take_outcome()
        return o.job, o.evaluation

    def running(self) -> list[tuple[int, Job]]:
        """``(pid, job)`` of the workers evaluating a job right now."""
        return [(w.proc.pid, w.job) for w in self._busy if w.started < math.inf]

    def workers(self) -> list[int]:
        """PIDs of the live workers (busy first)."""
        return [w.proc.pid for w in self._busy + self._idle if w.proc.is_alive()]

    def close(self) -> None:
        for w in self._busy + self._idle:
            w.stop(kill=w in self._busy)
        self._busy.clear()
        self._idle.clear()
        self._queue.clear()
        self._done.clear()

    def __enter__(self) -> ProcessBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
