"""Evaluation backends: inline, process pool (the default), Ray (optional; docs/RUNS.md),
and the recorder that journals their results into a run store (:mod:`.recorder`).

``make_backend(name, fitness, ...)`` builds one; the core imports Ray only when
``name == "ray"``.
"""

from __future__ import annotations

from ..evaluation import ERROR, LOST, OK, TIMEOUT, Fitness, Outcome
from .base import InlineBackend
from .pool import QUEUE_PER_WORKER, ProcessBackend
from .recorder import RecordingEvaluator

BACKENDS = ("inline", "process", "ray")


def make_backend(name: str, fitness: Fitness, workers: int | None = None, timeout: float = 0.0,
                 retries: int = 2, ray_address: str | None = None, queue: int | None = None):
    """A backend by name; ``workers`` defaults to one per core (inline: 1).

    ``queue``: jobs in flight beyond the workers (process and Ray; default
    ``QUEUE_PER_WORKER x workers``),
    so ``capacity = workers + queue``; the inline backend's capacity is ``workers``."""
    if name == "inline":
        return InlineBackend(fitness, workers or 1, timeout)
    if name == "process":
        return ProcessBackend(fitness, workers, timeout, retries, queue=queue)
    if name == "ray":
        from .ray_backend import RayBackend

        return RayBackend(fitness, workers, timeout, retries, ray_address, queue)
    raise ValueError(f"unknown backend {name!r}; backends: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "ERROR", "LOST", "OK", "QUEUE_PER_WORKER", "TIMEOUT", "InlineBackend",
           "Outcome", "ProcessBackend", "RecordingEvaluator", "make_backend"]
