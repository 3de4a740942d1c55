"""What a benchmark produces: plain dataclasses, convertible to JSON-ready dicts.

Non-finite numbers become JSON-safe values in :func:`jsonable`: ``nan`` ->
``null``, ``inf`` -> ``"inf"`` (e.g. "never reached the target").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, is_dataclass

import numpy as np

from .stats import Speedup, Summary, TTest
from .tune import Tuning

OK, FAILED = "ok", "failed"

VERDICTS = ("better", "worse", "no difference", "tie", "n/a", "clipped")
"""Against the baseline, decided by Welch's test of the final validation loss (the tuning
objective, defined on every task) after Holm's correction over every comparison of the
table: ``better``/``worse`` where the adjusted p is below :data:`ALPHA` (by the sign of the
loss difference), ``no difference`` where it is not, ``tie`` where both optimizers' losses
are the same constant on every seed, ``n/a`` where the test is undefined, ``clipped`` where
either optimizer's tuned value stayed at the edge of its final range (no verdict from a
clipped tuning range)."""

ALPHA = 0.05


@dataclass
class Entry:
    """One optimizer on one task: tuning, final runs over seeds, and statistics."""

    optimizer: str
    task: str
    status: str  # "ok" or "failed"
    reason: str | None
    tuning: Tuning | None
    config: dict[str, float] | None = None  # the tuned hyperparameters
    seeds: list[int] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    loss_curves: list[list[float]] = field(default_factory=list)  # [seed][eval]
    metric_curves: list[list[float]] = field(default_factory=list)
    seed_status: list[str] = field(default_factory=list)  # "ok", "diverged", "error"
    final_metric: Summary | None = None
    final_loss: Summary | None = None
    steps_to_target: float | None = None  # inf: never reached
    speedup: Speedup | None = None
    ttest: TTest | None = None  # final metric against the baseline
    ttest_loss: TTest | None = None  # final validation loss against the baseline
    p_holm: dict[str, float] | None = None  # {"loss", "metric"}: Holm-adjusted over the table
    verdict: str | None = None  # against the baseline, decided by the loss test: see VERDICTS
    wall_time: float = 0.0

    @property
    def diverged_seeds(self) -> int:
        return sum(s != "ok" for s in self.seed_status)

    def mean_loss_curve(self) -> np.ndarray:
        """Validation loss averaged over the seeds that did not diverge, per evaluation."""
        ok = [c for c, s in zip(self.loss_curves, self.seed_status, strict=True) if s == "ok"]
        if not ok:
            return np.full(len(self.eval_steps), np.nan)
        return np.asarray(ok, dtype=float).mean(axis=0)


@dataclass
class BaselineFit:
    """The baseline's final validation loss against its step budget, and its power-law fit."""

    budgets: list[int]
    losses: list[float]  # mean final loss over seeds at each budget
    fit: dict | None = None  # PowerLaw fields
    error: str | None = None


@dataclass
class BenchResult:
    """Everything one ``optforge bench`` run measured."""

    settings: dict
    candidates: list[dict]
    tasks: dict[str, dict]  # name -> metric, higher_is_better, steps, target, baseline fit
    entries: list[Entry]
    ratios: dict[str, dict[str, float]]  # performance ratios [optimizer][task]
    scores: dict[str, float]  # AlgoPerf performance-profile scores
    wall_time: float = 0.0
    files: dict[str, str] = field(default_factory=dict)

    def entry(self, optimizer: str, task: str) -> Entry:
        for e in self.entries:
            if e.optimizer == optimizer and e.task == task:
                return e
        raise KeyError(f"no result for optimizer {optimizer!r} on task {task!r}")

    @property
    def optimizers(self) -> list[str]:
        return [c["label"] for c in self.candidates]

    def as_dict(self) -> dict:
        return jsonable(self)


def jsonable(obj):
    """Dataclasses, numpy values and non-finite floats as JSON-ready Python values."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
    return obj
