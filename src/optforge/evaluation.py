"""The values every layer above ``lang`` passes around when it scores a program.

The search submits :class:`Job` values to an :class:`Evaluator` (a backend of
:mod:`optforge.runtime`), which runs each with a :class:`Fitness` and hands
back an :class:`Evaluation` inside an :class:`Outcome` (status, wall time,
worker, attempts); the run store (:mod:`optforge.store`) records them. All
three layers meet here, at the bottom, so none of them imports another to
name what it exchanges (docs/ARCHITECTURE.md: layers).

Higher fitness is better; :data:`WORST` (``-inf``) is a candidate that
failed, diverged or could not run. Statuses of an outcome: :data:`OK` (the
fitness returned, whatever its value), :data:`ERROR` (the fitness raised),
:data:`TIMEOUT` (ran past the backend's limit), :data:`LOST` (its worker died
every time it was tried).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .lang.ir import Program

WORST = -math.inf
OK, ERROR, TIMEOUT, LOST = "ok", "error", "timeout", "lost"


@dataclass(frozen=True)
class Job:
    """One evaluation request: the program, the stage it is scored on, and the hurdle
    thresholds in force when it was submitted. ``key`` is the caller's handle."""

    key: int
    program: Program
    stage: str
    thresholds: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """The outcome of scoring one program on one stage (see :mod:`optforge.search.fitness`)."""

    fitness: float
    complete: bool = True
    diverged: bool = False
    scores: dict[str, float] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)
    best_lr: dict[str, float] = field(default_factory=dict)
    checkpoints: dict[str, float] = field(default_factory=dict)
    stopped: str | None = None
    cost: float = 0.0
    seconds: float = 0.0
    error: str | None = None
    curves: dict[str, dict] = field(default_factory=dict)
    """Per task: ``steps``, ``loss`` (the best rate's validation loss, geometric mean over
    the task seeds) and, where the baseline's is known, ``baseline`` (the same at its best
    rate)."""
    lr_width: dict[str, float] = field(default_factory=dict)
    """Per task: decades of learning rate within 10% of the best loss."""

    @property
    def failed(self) -> bool:
        return self.diverged or self.error is not None


class Fitness(Protocol):
    """Scores programs on named stages; higher is better, :data:`WORST` at worst."""

    def evaluate(self, program: Program, stage: str,
                 thresholds: Mapping[str, float] | None = None) -> Evaluation:
        """Score ``program`` on ``stage``, stopping early at hurdles in ``thresholds``."""


class Evaluator(Protocol):
    """Runs jobs and gives their evaluations back; at most ``capacity`` in flight at once."""

    capacity: int

    def submit(self, job: Job) -> None:
        """Queue ``job``."""

    def take(self) -> tuple[Job, Evaluation]:
        """Block until some submitted job completes; return it with its evaluation."""

    def pending(self) -> int:
        """Jobs submitted and not yet taken."""

    def close(self) -> None:
        """Release workers."""


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
    """A job that produced no evaluation: :data:`WORST` with ``message``."""
    return Outcome(job, Evaluation(WORST, error=message), status, seconds, worker, attempts)
