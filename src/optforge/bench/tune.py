"""Equal-budget tuning of one optimizer on one task with Optuna.

Every (optimizer, task) pair gets the same number of trials, the same
sampler and pruner, and the same tuning seed (:data:`TUNE_SEED`, common
random numbers: every configuration sees the same initialisation and data
order). The final runs use seeds ``0 .. S-1``, disjoint from it.

* Sampler: ``tpe`` (seeded, multivariate, constant liar for batched asks),
  ``qmc`` (scrambled Sobol) or ``random``. The first trial is always the
  space's :func:`~optforge.bench.space.center` (the program's defaults).
* Pruner: ``sha`` (successive halving), ``hyperband`` or ``none``, fed the
  validation loss at every evaluation step (the resource is training steps,
  the minimum resource the first evaluation step, reduction factor 3).
* Objective: the final validation loss (minimised). A trial whose replica
  diverges is told ``inf``; a run that raises (a program error) fails all
  its trials and ends the tuning: the error is deterministic.
* ``batch`` trials are asked at once and trained as replicas of one batched
  run, each with its own hyperparameters; the run stops early once every
  replica in it is pruned or diverged.
* Deterministic: the study is named ``LABEL@TASK`` (Hyperband assigns brackets
  by a hash of the name; Optuna's default is a random UUID), so the same
  settings and training outcomes give the same trials, which is what a
  resumed bench run relies on (:mod:`optforge.bench.units`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import optuna

from ..train import OK
from .backend import RunSpec
from .candidates import Candidate
from .space import center, suggest
from .units import Units

TUNE_SEED = 1_000_003
SAMPLERS = ("tpe", "qmc", "random")
PRUNERS = ("sha", "hyperband", "none")

Progress = Callable[[float], None]
"""Called with the number of training steps of each batched run just finished."""


@dataclass
class TrialRecord:
    """One tuning trial: its configuration, final validation loss and fate."""

    number: int
    params: dict[str, float]
    value: float | None  # final validation loss (inf: diverged; None: pruned or error)
    state: str  # "complete", "pruned", "diverged" or "error"
    last_step: int


@dataclass
class Tuning:
    """The outcome of tuning one optimizer on one task."""

    optimizer: str
    task: str
    sampler: str
    pruner: str
    seed: int
    trials: list[TrialRecord] = field(default_factory=list)
    best: dict[str, float] | None = None
    best_value: float | None = None
    error: str | None = None

    def count(self, state: str) -> int:
        return sum(t.state == state for t in self.trials)

    @property
    def failure(self) -> str | None:
        """Why no configuration came out, or None."""
        if self.best is not None:
            return None
        if self.error:
            return self.error
        n = len(self.trials)
        if self.count("diverged") == n:
            return f"diverged in all {n} tuning trials"
        return (f"no tuning trial finished ({self.count('diverged')} diverged, "
                f"{self.count('pruned')} pruned)")

    def as_dict(self) -> dict:
        return asdict(self)


def make_sampler(name: str, trials: int, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, min(10, trials // 3)),
                                          multivariate=True, constant_liar=True)
    if name == "qmc":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; samplers: {', '.join(SAMPLERS)}")


def make_pruner(name: str, min_resource: int, max_resource: int) -> optuna.pruners.BasePruner:
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource,
                                                      reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=min_resource,
                                              max_resource=max_resource, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; pruners: {', '.join(PRUNERS)}")


def _optuna_params(config: dict[str, float], cand: Candidate) -> dict[str, float]:
    """A configuration in Optuna's parameter names (``1-name`` for log1m dims)."""
    return {(f"1-{n}" if cand.space[n].kind == "log1m" else n):
            (1 - v if cand.space[n].kind == "log1m" else v) for n, v in config.items()}


def tune(cand: Candidate, spec: RunSpec, *, trials: int, sampler: str = "tpe",
         pruner: str = "sha", batch: int = 4, seed: int = 0,
         progress: Progress | None = None, units: Units | None = None) -> Tuning:
    """Tune ``cand`` on ``spec.task`` with ``trials`` trials; see the module docstring.

    ``units`` trains the batches (and records or replays them in a run store);
    batch ``b`` is the unit ``tune/b``."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    units = units or Units()
    # a fixed name: Hyperband assigns brackets by a hash of the study name (default: a UUID)
    study = optuna.create_study(direction="minimize", sampler=make_sampler(sampler, trials, seed),
                                pruner=make_pruner(pruner, spec.eval_every, spec.steps),
                                study_name=f"{cand.label}@{spec.task}")
    study.enqueue_trial(_optuna_params(center(cand.space, cand.program), cand))
    out = Tuning(cand.label, spec.task, sampler, pruner, TUNE_SEED)
    tick = progress or (lambda _n: None)
    done = 0
    while done < trials and out.error is None:
        asked = [study.ask() for _ in range(min(batch, trials - done))]
        records, out.error = _run_batch(study, asked, cand, spec, units, done // batch)
        out.trials += records
        tick(spec.steps)
        done += len(asked)
    finite = [t for t in out.trials if t.state == "complete"]
    if finite and out.error is None:
        best = min(finite, key=lambda t: (t.value, t.number))
        out.best, out.best_value = dict(best.params), best.value
    return out


def _run_batch(study: optuna.Study, asked: list[optuna.Trial], cand: Candidate,
               spec: RunSpec, units: Units, number: int
               ) -> tuple[list[TrialRecord], str | None]:
    """Train the asked trials as replicas of one run; tell Optuna each trial's fate."""
    n, steps = len(asked), spec.steps
    configs = [suggest(t, cand.space) for t in asked]
    records: dict[int, TrialRecord] = {}
    last = 0

    def on_eval(step: int, val_loss) -> bool:
        nonlocal last
        last = step
        for i in range(n):
            v = float(val_loss[i])
            if i in records or not math.isfinite(v):  # pruned, or diverged: told at the end
                continue
            asked[i].report(v, step)
            if step < steps and asked[i].should_prune():
                records[i] = TrialRecord(asked[i].number, configs[i], None, "pruned", step)
                study.tell(asked[i], state=optuna.trial.TrialState.PRUNED)
        return len(records) == n

    result = units.train(f"tune/{number}", cand.label, spec, cand.program, configs,
                         [TUNE_SEED] * n, on_eval)
    for i in range(n):
        if i in records:
            continue
        if result.error is not None:
            records[i] = TrialRecord(asked[i].number, configs[i], None, "error", last)
            study.tell(asked[i], state=optuna.trial.TrialState.FAIL)
            continue
        v = float(result.final_loss[i])
        if result.status[i] == OK and math.isfinite(v):
            records[i] = TrialRecord(asked[i].number, configs[i], v, "complete", steps)
            study.tell(asked[i], v)
        else:
            step = result.diverged_step[i] or last
            records[i] = TrialRecord(asked[i].number, configs[i], math.inf, "diverged", step)
            study.tell(asked[i], math.inf)
    return [records[i] for i in range(n)], result.error
