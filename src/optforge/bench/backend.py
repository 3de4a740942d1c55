"""The benchmark's one door to the trainer: ``K`` replicas, one configuration each.

:func:`train_replicas` runs :func:`optforge.train.train` with replica ``k``
configured by ``configs[k]`` and seeded by ``seeds[k]``, and feeds each
validation evaluation (step > 0) to ``on_eval(step, val_loss)`` as it
happens; once it returns True the run stops there (pruning saves the rest).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..lang.ir import Program
from ..train import TrainResult, train

OnEval = Callable[[int, np.ndarray], bool]
"""``on_eval(step, val_loss (K,)) -> stop``; ``val_loss`` is NaN for diverged replicas."""


@dataclass(frozen=True)
class RunSpec:
    """How every run of one task is trained: tier, step budget, evaluations, schedule, device,
    and whether the optimizer step is compiled (docs/COMPILE.md)."""

    task: str
    tier: str = "tiny"
    steps: int = 100
    evals: int = 10
    schedule: str = "cosine"
    device: str = "cpu"
    compile: bool = False

    def with_steps(self, steps: int) -> RunSpec:
        return replace(self, steps=steps)

    @property
    def eval_every(self) -> int:
        return eval_every(self.steps, self.evals)


def eval_every(steps: int, evals: int) -> int:
    """Evaluation period that gives ``evals`` evaluations after step 0."""
    return max(1, steps // max(1, evals))


def train_replicas(spec: RunSpec, program: Program, configs: Sequence[dict[str, float]],
                   seeds: Sequence[int], on_eval: OnEval | None = None) -> TrainResult:
    """Train ``len(seeds)`` replicas, replica ``k`` with ``configs[k]`` (same keys in each)."""
    if len(configs) != len(seeds):
        raise ValueError(f"{len(configs)} configurations for {len(seeds)} seeds")
    names = sorted({n for c in configs for n in c})
    hparams = {n: [float(c[n]) for c in configs] for n in names}
    kwargs: dict = {"tier": spec.tier, "seeds": list(seeds), "hparams": hparams,
                    "steps": spec.steps, "eval_every": spec.eval_every,
                    "schedule": spec.schedule, "device": spec.device, "compile": spec.compile}
    stopped = False
    if on_eval is not None:
        def live(step: int, loss: np.ndarray) -> bool:
            nonlocal stopped
            if step > 0 and not stopped:
                stopped = bool(on_eval(step, np.asarray(loss, dtype=float)))
            return stopped
        kwargs["on_eval"] = live
    with warnings.catch_warnings():  # a program with matrix ops runs eagerly, silently
        warnings.filterwarnings("ignore", "compile=True: program", UserWarning)
        return train(spec.task, program, **kwargs)
