"""The benchmark's one door to the trainer: ``K`` replicas, one configuration each.

:func:`train_replicas` runs :func:`optforge.train.train` with replica ``k``
configured by ``configs[k]`` and seeded by ``seeds[k]``, and feeds each
validation evaluation (step > 0) to ``on_eval(step, val_loss)``; once it
returns True the remaining evaluations are not wanted. When the trainer
takes an ``on_eval`` callback it is called live (and may stop the run);
otherwise the recorded evaluations are replayed after the run, which gives
the same decisions, only without the saving.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import numpy as np

from ..lang.ir import Program
from ..train import TrainResult, train

OnEval = Callable[[int, np.ndarray], bool]
"""``on_eval(step, val_loss (K,)) -> stop``; ``val_loss`` is NaN for diverged replicas."""


def eval_every(steps: int, evals: int) -> int:
    """Evaluation period that gives ``evals`` evaluations after step 0."""
    return max(1, steps // max(1, evals))


def _live_callback() -> bool:
    return "on_eval" in inspect.signature(train).parameters


def train_replicas(task: str, tier: str, program: Program, configs: Sequence[dict[str, float]],
                   seeds: Sequence[int], steps: int, evals: int,
                   on_eval: OnEval | None = None) -> TrainResult:
    """Train ``len(seeds)`` replicas, replica ``k`` with ``configs[k]`` (same keys in each)."""
    if len(configs) != len(seeds):
        raise ValueError(f"{len(configs)} configurations for {len(seeds)} seeds")
    names = sorted({n for c in configs for n in c})
    hparams = {n: [float(c[n]) for c in configs] for n in names}
    kwargs: dict = {"tier": tier, "seeds": list(seeds), "hparams": hparams, "steps": steps,
                    "eval_every": eval_every(steps, evals)}
    stopped = False
    if on_eval is not None and _live_callback():
        def live(step: int, loss: np.ndarray) -> bool:
            nonlocal stopped
            if step > 0 and not stopped:
                stopped = bool(on_eval(step, np.asarray(loss, dtype=float)))
            return stopped
        kwargs["on_eval"] = live
    result = train(task, program, **kwargs)
    if on_eval is not None and not _live_callback() and result.error is None:
        for i, step in enumerate(result.eval_steps):
            if step > 0 and on_eval(int(step), np.asarray(result.eval_loss[i], dtype=float)):
                break
    return result
