"""The evaluator seam: submit candidate evaluations, take results as they complete.

The search never calls a fitness function directly; it submits :class:`Job`
values (plain, picklable data: the program, the stage it is scored on, and the
hurdle thresholds in force when it was submitted) and takes ``(job, evaluation)``
pairs back in completion order. :class:`InlineEvaluator` runs each job in the
calling process when its result is taken (one at a time, in submission order,
so a seed fixes the search); a process-pool or Ray evaluator only has to
implement the same four members.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..lang.ir import Program
from .fitness import Evaluation, Fitness


@dataclass(frozen=True)
class Job:
    """One evaluation request. ``key`` is the caller's handle for the result."""

    key: int
    program: Program
    stage: str
    thresholds: Mapping[str, float] = field(default_factory=dict)


class Evaluator(Protocol):
    """Runs jobs; at most ``capacity`` of them should be in flight at once."""

    capacity: int

    def submit(self, job: Job) -> None:
        """Queue ``job``."""

    def take(self) -> tuple[Job, Evaluation]:
        """Block until some submitted job completes; return it with its evaluation."""

    def pending(self) -> int:
        """Jobs submitted and not yet taken."""

    def close(self) -> None:
        """Release workers."""


class InlineEvaluator:
    """Evaluates in the calling process, oldest job first, when a result is taken."""

    capacity = 1

    def __init__(self, fitness: Fitness):
        self.fitness = fitness
        self._queue: deque[Job] = deque()

    def submit(self, job: Job) -> None:
        self._queue.append(job)

    def take(self) -> tuple[Job, Evaluation]:
        if not self._queue:
            raise RuntimeError("take() with no job in flight")
        job = self._queue.popleft()
        return job, self.fitness.evaluate(job.program, job.stage, job.thresholds)

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self._queue.clear()
