"""TensorBoard logs of ``optforge search`` and ``optforge bench`` with ``--tensorboard DIR``.

Written with ``torch.utils.tensorboard.SummaryWriter`` (the ``tensorboard``
package: ``pip install "optforge[tensorboard]"``), flushed every few seconds,
so ``tensorboard --logdir DIR`` shows a run while it goes (docs/RUNS.md).

Search (x axis: evaluations done, unless said otherwise):

* ``search/best_fitness``; ``search/elapsed_s``; ``search/progress`` (evaluated / budget)
  and ``search/phase`` (0 evolution, 1 funnel, 2 simplification, 3 held-out: stage progress);
* ``cache/*``: the counters (``structural`` and ``behavioural`` cache hits, ``skip_rate``,
  ``evaluated``, ``hurdle_stopped``, ``diverged``, ``errors``, ``filtered``, ...) and
  ``cache/filtered_by/<filter>`` (the children each invariance filter rejected);
* at the end: ``funnel/<stage>`` (fitness of each candidate that reached the stage, x: rank),
  ``winners/<i>/<stage>``, ``winners/<i>/heldout``, ``hall_of_fame/fitness`` (x: rank) and
  ``curves/<task>/best`` beside ``curves/<task>/baseline`` (x: training step): the validation
  loss of the fittest program and of the tuned baseline.

Bench (after each optimizer finishes on a task, so a long benchmark fills in as it goes):

* ``bench/progress`` (fraction of training steps done; x: seconds since the start);
* ``<task>/final_metric/<optimizer>``, ``<task>/final_loss/<optimizer>``,
  ``<task>/steps_to_target/<optimizer>``, ``<task>/speedup/<optimizer>`` (x: 0);
* ``<task>/tuning/<optimizer>``: each trial's final validation loss (x: trial number);
* ``<task>/curves/<optimizer>``: the seed-mean validation loss (x: training step);
* at the end ``profile/<optimizer>``, the performance-profile score.

Tags hold task references as written (``my_tasks.py:my_task``); TensorBoard accepts them.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

PHASES = ("evolution", "funnel", "simplify", "heldout")


def require() -> None:
    """ImportError saying how to install TensorBoard when it is missing (checked before a
    run directory is made)."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        raise ImportError('--tensorboard needs the tensorboard package: pip install '
                          '"optforge[tensorboard]"') from None


def writer(log_dir: str | Path):
    """A ``SummaryWriter`` for ``log_dir`` (made if missing)."""
    require()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir), flush_secs=5)


def _finite(v) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)


class SearchLog:
    """The search's logger: ``progress`` is the search's ``on_progress`` hook."""

    def __init__(self, log_dir: str | Path):
        self.w = writer(log_dir)

    def progress(self, p) -> None:
        n = p.counters.evaluated
        if _finite(p.best):
            self.w.add_scalar("search/best_fitness", p.best, n)
        self.w.add_scalar("search/elapsed_s", p.elapsed, n)
        self.w.add_scalar("search/progress", n / max(p.budget, 1), n)
        if p.phase in PHASES:
            self.w.add_scalar("search/phase", PHASES.index(p.phase), n)
        counters = p.counters.as_dict()
        for name, count in counters.pop("filtered_by").items():
            self.w.add_scalar(f"cache/filtered_by/{name}", count, n)
        for key, value in counters.items():
            if _finite(value):
                self.w.add_scalar(f"cache/{key}", value, n)

    def result(self, result) -> None:
        """The finished search: funnel, winners, hall of fame, the best program's curves."""
        stages: dict[str, list[float]] = {}
        for row in result.funnel:
            stages.setdefault(row["stage"], []).append(row["fitness"])
        for stage, values in stages.items():
            for rank, v in enumerate(sorted((v for v in values if _finite(v)), reverse=True)):
                self.w.add_scalar(f"funnel/{stage}", v, rank)
        for i, win in enumerate(result.winners, 1):
            for stage, v in win.stage_fitness.items():
                if _finite(v):
                    self.w.add_scalar(f"winners/{i}/{stage}", v, 0)
            if win.heldout is not None and _finite(win.heldout.fitness):
                self.w.add_scalar(f"winners/{i}/heldout", win.heldout.fitness, 0)
        for rank, c in enumerate(result.hall_of_fame):
            self.w.add_scalar("hall_of_fame/fitness", c.fitness, rank)
        if result.best is not None:
            for task, curve in result.best.evaluation.curves.items():
                for key, tag in (("loss", "best"), ("baseline", "baseline")):
                    for step, v in zip(curve.get("steps", []), curve.get(key) or [],
                                       strict=False):
                        if _finite(v):
                            self.w.add_scalar(f"curves/{task}/{tag}", v, int(step))
        self.w.flush()

    def close(self) -> None:
        self.w.close()


class BenchLog:
    """The benchmark's logger: ``progress`` and ``entry`` are ``run_bench``'s hooks."""

    def __init__(self, log_dir: str | Path):
        self.w = writer(log_dir)
        self.t0 = time.perf_counter()

    def progress(self, done: float, total: float, what: str) -> None:
        if total > 0:
            self.w.add_scalar("bench/progress", done / total,
                              int(time.perf_counter() - self.t0))

    def entry(self, e) -> None:
        """One optimizer finished on one task."""
        t, o = e.task, e.optimizer
        for name, stat in (("final_metric", e.final_metric), ("final_loss", e.final_loss)):
            if stat is not None and _finite(stat.mean):
                self.w.add_scalar(f"{t}/{name}/{o}", stat.mean, 0)
        if e.tuning is not None:
            for trial in e.tuning.trials:
                if _finite(trial.value):
                    self.w.add_scalar(f"{t}/tuning/{o}", trial.value, trial.number)
        if e.loss_curves:
            for step, v in zip(e.eval_steps, e.mean_loss_curve(), strict=True):
                if _finite(float(v)):
                    self.w.add_scalar(f"{t}/curves/{o}", float(v), int(step))
        self.w.flush()

    def compared(self, result) -> None:
        """The finished benchmark: steps to target, speedups, profile scores."""
        for e in result.entries:
            if _finite(e.steps_to_target):
                self.w.add_scalar(f"{e.task}/steps_to_target/{e.optimizer}",
                                  e.steps_to_target, 0)
            if e.speedup is not None and _finite(e.speedup.value):
                self.w.add_scalar(f"{e.task}/speedup/{e.optimizer}", e.speedup.value, 0)
        for o, score in result.scores.items():
            if _finite(score):
                self.w.add_scalar(f"profile/{o}", score, 0)
        self.w.flush()

    def close(self) -> None:
        self.w.close()
