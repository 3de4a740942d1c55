"""Hurdles: stop a candidate early when it trails the field at a checkpoint.

At each checkpoint (a fraction of a task's training steps) a candidate has a
score, the same log-ratio against the baseline that fitness uses but taken at
that step (see :mod:`optforge.search.fitness`). :class:`Hurdles` keeps every
score seen at each ``(task, checkpoint)`` and, once ``warmup`` of them are in,
sets the hurdle there at their ``percentile``-th percentile (the "lower"
order statistic, so a diverged ``-inf`` score never turns it into NaN). A
candidate scoring strictly below the hurdle stops training; fitness then uses
its score so far (see :class:`~optforge.search.fitness.TrainerFitness`).

Thresholds are a plain ``{"task@fraction": value}`` mapping, taken when a job
is submitted, so remote evaluators need no shared state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np


def key(task: str, fraction: float) -> str:
    return f"{task}@{fraction:g}"


class Hurdles:
    """Running percentiles of checkpoint scores (see the module docstring)."""

    def __init__(self, percentile: float = 25.0, warmup: int = 8):
        if not 0 <= percentile <= 100:
            raise ValueError(f"hurdle percentile must be in [0, 100], got {percentile}")
        if warmup < 1:
            raise ValueError(f"hurdle warmup must be >= 1, got {warmup}")
        self.percentile = percentile
        self.warmup = warmup
        self.scores: dict[str, list[float]] = {}

    @property
    def enabled(self) -> bool:
        return self.percentile > 0

    def record(self, checkpoint_scores: Mapping[str, float]) -> None:
        """Add one candidate's ``{"task@fraction": score}`` (NaN counts as ``-inf``)."""
        for k, s in checkpoint_scores.items():
            self.scores.setdefault(k, []).append(-math.inf if math.isnan(s) else float(s))

    def thresholds(self) -> dict[str, float]:
        """The hurdle at every checkpoint with at least ``warmup`` scores."""
        if not self.enabled:
            return {}
        return {k: float(np.percentile(v, self.percentile, method="lower"))
                for k, v in sorted(self.scores.items()) if len(v) >= self.warmup}


def trails(score: float, task: str, fraction: float, thresholds: Mapping[str, float]) -> bool:
    """Whether ``score`` is strictly below the hurdle at ``(task, fraction)`` (if any)."""
    h = thresholds.get(key(task, fraction))
    return h is not None and (math.isnan(score) or score < h)


def fractions(values: Iterable[float]) -> tuple[float, ...]:
    """Sorted, validated checkpoint fractions (each in (0, 1))."""
    out = tuple(sorted(set(float(v) for v in values)))
    if any(not 0 < f < 1 for f in out):
        raise ValueError(f"hurdle checkpoints must be fractions in (0, 1), got {list(out)}")
    return out
