"""The Ray backend: one Ray task per evaluation, on a local or remote cluster.

``RayBackend(fitness, workers, timeout, retries, address)`` connects to
``address`` (``"auto"``, ``"HOST:PORT"``, or None: start a local one-machine
cluster) unless Ray is already initialised, puts the fitness in the object
store once, and runs each job as a task needing one CPU (``torch`` at one
thread). The accounting matches the process pool: tasks have
``max_retries=0`` and this backend resubmits a task whose worker or node died
(``retries`` times, then ``lost``). The timeout is enforced inside the task by
``SIGALRM`` from the moment it starts (a cold worker's imports do not count),
and recorded ``timeout``; a task that outlives ``2 * timeout + 60`` seconds
since submission (a hang in native code) is cancelled with ``force=True`` (its
worker is killed) and recorded ``timeout`` too (counted from submission, the
backstop also covers a queued task's wait, about one evaluation at most).
``workers`` workers are started and warmed (torch imported, one optimizer step)
before the first job; a worker that replaces a killed one starts cold, which its
next task's time includes. ``capacity = workers + queue`` tasks are in flight.

Ray is imported only when this backend is built (``--backend ray``); install
it with ``pip install optforge[ray]``.
"""

from __future__ import annotations

import math
import time
from collections import deque

from ..evaluation import LOST, TIMEOUT, Evaluation, Fitness, Job, Outcome, failed
from .base import InlineBackend, worker_name
from .pool import QUEUE_PER_WORKER

_FITNESS: dict[str, Fitness] = {}
"""In each Ray worker process: the fitness by object-store id, kept across tasks."""


def _fitness(holder: list):  # pragma: no cover - in a worker
    """The fitness behind ``holder = [ObjectRef]``, fetched once per worker process.

    A task argument that is an ObjectRef itself would be deserialised afresh for every
    task, so what a fitness learns while evaluating (the later tiers' tuned baselines)
    would be lost and paid again by every task; wrapped in a list it reaches the task
    as the reference, and the worker keeps one copy, as a process-pool worker does."""
    (ref,) = holder
    key = ref.hex()
    if key not in _FITNESS:
        import ray

        _FITNESS[key] = ray.get(ref)
    return _FITNESS[key]


def _evaluate(holder: list, job: Job, timeout: float):  # pragma: no cover - in a worker
    import torch

    torch.set_num_threads(1)
    from . import _warm as _  # noqa: F401 - a replacement worker's lazy imports, before the clock

    fitness = _fitness(holder)

    inline = InlineBackend(fitness, timeout=timeout)  # SIGALRM from the task's actual start
    inline.submit(job)
    o = inline.take_outcome()
    return o.evaluation, o.status, o.seconds, o.worker


def _start() -> str:  # pragma: no cover - runs in a Ray worker
    import torch

    torch.set_num_threads(1)
    from . import _warm as _  # noqa: F401 - the first optimizer step's lazy imports

    return worker_name()


def ray_module():
    """``import ray`` with an actionable message."""
    try:
        import ray
    except ImportError as err:
        raise ImportError("the Ray backend needs Ray: pip install 'optforge[ray]'") from err
    return ray


class RayBackend:
    """``workers`` tasks run at once (one CPU each); ``capacity = workers + queue`` are in
    flight (``queue`` default ``QUEUE_PER_WORKER x workers``: Ray's scheduler holds them and
    starts one the moment a CPU frees up)."""

    def __init__(self, fitness: Fitness, workers: int | None = None, timeout: float = 0.0,
                 retries: int = 2, address: str | None = None, queue: int | None = None):
        ray = ray_module()
        self._ray = ray
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except ConnectionError as err:
                raise ConnectionError(
                    f"cannot join the Ray cluster at {address}: {err}. Run the driver on a "
                    "node of the cluster (one started with `ray start`), at the address the "
                    "head printed; where the cluster uses Ray's token authentication (the "
                    "head logs 'Token authentication is enabled'), set RAY_AUTH_MODE=token "
                    "and give this machine the head's token (~/.ray/auth_token, or "
                    "RAY_AUTH_TOKEN); see docs/RUNS.md") from err
        self.workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.queue = QUEUE_PER_WORKER * self.workers if queue is None else queue
        if self.workers < 1 or self.queue < 0 or retries < 0 or timeout < 0:
            raise ValueError("workers must be >= 1, queue, retries and timeout >= 0")
        self.capacity = self.workers + self.queue
        self.timeout, self.retries = timeout, retries
        # the driver's backstop for hangs SIGALRM cannot break, counted from submission: a
        # queued job first waits for up to ceil(queue / workers) evaluations of at most timeout
        self._hard = (2 + math.ceil(self.queue / self.workers)) * timeout + 60
        self._fitness = ray.put(fitness)
        self._task = ray.remote(num_cpus=1, max_retries=0)(_evaluate)
        # start and warm ``workers`` workers (Ray reuses them), so that timeouts do not
        # count the seconds a cold worker spends importing torch
        warm = ray.remote(num_cpus=1)(_start)
        ray.get([warm.remote() for _ in range(self.workers)])
        self._flight: dict = {}  # ObjectRef -> (job, attempts, submitted)
        self._done: deque[Outcome] = deque()
        self.deaths = 0

    def _launch(self, job: Job, attempts: int) -> None:
        ref = self._task.remote([self._fitness], job, self.timeout)
        self._flight[ref] = (job, attempts, time.perf_counter())

    def submit(self, job: Job) -> None:
        self._launch(job, 1)

    def pending(self) -> int:
        return len(self._flight) + len(self._done)

    def take_outcome(self) -> Outcome:
        ray = self._ray
        while not self._done:
            if not self._flight:
                raise RuntimeError("take() with no job in flight")
            limit = None
            if self.timeout:
                now = time.perf_counter()
                limit = max(0.0, min(t + self._hard - now for _, _, t in
                                     self._flight.values()))
            ready, _ = ray.wait(list(self._flight), num_returns=1, timeout=limit)
            for ref in ready:
                job, attempts, t0 = self._flight.pop(ref)
                try:
                    ev, status, sec, name = ray.get(ref)
                except ray.exceptions.RayTaskError as err:  # not the candidate: run_job catches
                    self._done.append(failed(job, "error", str(err).splitlines()[0],
                                             time.perf_counter() - t0, attempts=attempts))
                except ray.exceptions.RayError as err:  # worker or node died
                    self.deaths += 1
                    if attempts > self.retries:
                        self._done.append(failed(job, LOST, f"worker died ({type(err).__name__})"
                                                 f" on {attempts} attempts",
                                                 time.perf_counter() - t0, attempts=attempts))
                    else:
                        self._launch(job, attempts + 1)
                else:
                    self._done.append(Outcome(job, ev, status, sec, name, attempts))
            if self.timeout:
                now = time.perf_counter()
                for ref, (job, attempts, t0) in list(self._flight.items()):
                    if now - t0 >= self._hard:
                        del self._flight[ref]
                        ray.cancel(ref, force=True)
                        self._done.append(failed(job, TIMEOUT, f"timed out after "
                                                 f"{self.timeout:g} s", now - t0,
                                                 attempts=attempts))
        return self._done.popleft()

    def take(self) -> tuple[Job, Evaluation]:
        o = self.take_outcome()
        return o.job, o.evaluation

    def close(self) -> None:
        for ref in self._flight:
            self._ray.cancel(ref, force=True)
        self._flight.clear()
        self._done.clear()
