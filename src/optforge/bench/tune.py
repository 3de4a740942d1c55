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
* Ranges that adapt: when the best configuration lies
  in the outer :data:`~optforge.bench.space.EDGE` of a range, that range
  widens (:meth:`~optforge.bench.space.Dim.widen`) and a round of
  ``ceil(trials / 2)`` more trials is spent, for every optimizer alike, until
  the best lies inside every range or :data:`MAX_ROUNDS` rounds were spent (the
  hard limit; also where a range cannot widen further). Each round is a new
  study over the widened space holding every earlier trial (same parameters,
  values, pruning rungs); its first trial is the best configuration with each
  widened value moved to the middle of its range's new part.
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
from .config import PRUNERS, SAMPLERS
from .space import Dim, Space, center, suggest
from .units import Units

TUNE_SEED = 1_000_003

MAX_ROUNDS = 3  # widening rounds per (optimizer, task) at most: the hard limit

Progress = Callable[[float], None]
"""Called with the number of training steps of each batched run just finished."""
Grow = Callable[[float], None]
"""Called with the training steps a widening round adds to the plan."""


def round_trials(trials: int) -> int:
    """The extra trials of one widening round."""
    return max(1, -(-trials // 2))


@dataclass
class TrialRecord:
    """One tuning trial: its configuration, final validation loss and fate."""

    number: int
    params: dict[str, float]
    value: float | None  # final validation loss (inf: diverged; None: pruned or error)
    state: str  # "complete", "pruned", "diverged" or "error"
    last_step: int
    round: int = 0  # 0: the equal budget; 1, 2, ...: widening rounds


@dataclass
class Edge:
    """A tuned value at the edge of its range, and what the bench did about it."""

    name: str
    side: str  # "low" or "high"
    value: float
    range: list[float]  # [low, high] where it was found
    round: int  # the round after which it was found
    widened_to: list[float] | None = None  # None: not widened (the hard limit)

    def __str__(self) -> str:
        lo, hi = self.range
        head = f"{self.name}={_g(self.value)} at the {self.side} edge of [{_g(lo)}, {_g(hi)}]"
        if self.widened_to is None:
            return f"{head}, hard limit"
        return f"{head} -> [{_g(self.widened_to[0])}, {_g(self.widened_to[1])}]"


def _g(x: float) -> str:
    """3 significant digits, more where they would round a momentum (0.9999) to 1."""
    short = f"{x:.3g}"
    return short if float(short) != 1.0 or x == 1.0 else f"{x:.6g}"


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
    space: dict[str, list] = field(default_factory=dict)  # the final ranges, [kind, lo, hi]
    edges: list[Edge] = field(default_factory=list)  # every edge hit, in order
    rounds: int = 0  # widening rounds spent

    @property
    def clipped(self) -> list[Edge]:
        """Edges left at the end: the tuned value lies at the edge of its final range (found
        by the last check, after the last round, and not widened)."""
        return [e for e in self.edges if e.widened_to is None and e.round == self.rounds]

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


def _optuna_params(config: dict[str, float], space: Space) -> dict[str, float]:
    """A configuration in Optuna's parameter names (``1-name`` for log1m dims)."""
    return {_param_name(n, space[n]): (1 - v if space[n].kind == "log1m" else v)
            for n, v in config.items()}


def tune(cand: Candidate, spec: RunSpec, *, trials: int, sampler: str = "tpe",
         pruner: str = "sha", batch: int = 4, seed: int = 0,
         progress: Progress | None = None, units: Units | None = None,
         grow: Grow | None = None, adapt: bool = True) -> Tuning:
    """Tune ``cand`` on ``spec.task`` with ``trials`` trials; see the module docstring.

    ``units`` trains the batches (and records or replays them in a run store);
    the ``k``-th batch, widening rounds included, is the unit ``tune/k``. ``adapt``
    False spends no widening round (the edges are still found and reported)."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    units = units or Units()
    space: Space = dict(cand.space)
    # a fixed name: Hyperband assigns brackets by a hash of the study name (default: a UUID)
    study = _study(cand, spec, space, sampler, pruner, trials, seed, [])
    study.enqueue_trial(_optuna_params(center(space, cand.program), space))
    out = Tuning(cand.label, spec.task, sampler, pruner, TUNE_SEED)
    tick = progress or (lambda _n: None)
    state = {"batches": 0}

    def spend(n: int, rnd: int) -> None:
        done = 0
        while done < n and out.error is None:
            asked = [study.ask() for _ in range(min(batch, n - done))]
            records, out.error = _run_batch(study, asked, cand, space, spec, units,
                                            state["batches"], rnd)
            state["batches"] += 1
            out.trials += records
            tick(spec.steps)
            done += len(asked)

    spend(trials, 0)
    while out.error is None:
        best = _best(out)
        if best is None:
            break
        edges = [Edge(n, side, best.params[n], [d.low, d.high], out.rounds)
                 for n, d in space.items() if (side := d.edge(best.params[n])) is not None]
        if not edges:
            break
        widened: Space = {}
        if adapt and out.rounds < MAX_ROUNDS:
            for e in edges:
                dim = space[e.name].widen(e.side)
                if dim is not None:
                    widened[e.name] = dim
                    e.widened_to = [dim.low, dim.high]
        out.edges += edges
        if not widened:
            break
        out.rounds += 1
        extra = round_trials(trials)
        if grow is not None:
            grow(-(-extra // batch) * spec.steps)
        probe = dict(best.params)  # the best, each widened value moved into the new part
        for e in edges:
            if e.name in widened:
                dim, old = widened[e.name], space[e.name]
                p = dim.position(old.high if e.side == "high" else old.low)
                probe[e.name] = dim.at((p + 1) / 2 if e.side == "high" else p / 2)
        space = {**space, **widened}
        study = _study(cand, spec, space, sampler, pruner, trials, seed + out.rounds,
                       study.trials)
        study.enqueue_trial(_optuna_params(probe, space))
        spend(extra, out.rounds)
    out.space = {n: d.as_list() for n, d in space.items()}
    best = _best(out)
    if best is not None and out.error is None:
        out.best, out.best_value = dict(best.params), best.value
    return out


def _best(out: Tuning) -> TrialRecord | None:
    finite = [t for t in out.trials if t.state == "complete"]
    return min(finite, key=lambda t: (t.value, t.number)) if finite else None


def _study(cand: Candidate, spec: RunSpec, space: Space, sampler: str, pruner: str,
           trials: int, seed: int, earlier: list) -> optuna.Study:
    """A study over ``space`` holding the ``earlier`` trials (a widening round's start)."""
    study = optuna.create_study(direction="minimize",
                                sampler=make_sampler(sampler, trials, seed),
                                pruner=make_pruner(pruner, spec.eval_every, spec.steps),
                                study_name=f"{cand.label}@{spec.task}")
    dists = {_param_name(n, d): _distribution(d) for n, d in space.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # system_attrs are experimental in create_trial
        for t in earlier:
            study.add_trial(optuna.trial.create_trial(
                state=t.state, params=t.params, distributions=dists,
                value=t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
                intermediate_values=t.intermediate_values, system_attrs=t.system_attrs))
    return study


def _param_name(name: str, dim: Dim) -> str:
    return f"1-{name}" if dim.kind == "log1m" else name


def _distribution(dim: Dim) -> optuna.distributions.FloatDistribution:
    if dim.kind == "log1m":
        return optuna.distributions.FloatDistribution(1 - dim.high, 1 - dim.low, log=True)
    return optuna.distributions.FloatDistribution(dim.low, dim.high, log=dim.kind == "log")


def _run_batch(study: optuna.Study, asked: list[optuna.Trial], cand: Candidate, space: Space,
               spec: RunSpec, units: Units, number: int, rnd: int
               ) -> tuple[list[TrialRecord], str | None]:
    """Train the asked trials as replicas of one run; tell Optuna each trial's fate."""
    n, steps = len(asked), spec.steps
    configs = [suggest(t, space) for t in asked]
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
                records[i] = TrialRecord(asked[i].number, configs[i], None, "pruned", step, rnd)
                study.tell(asked[i], state=optuna.trial.TrialState.PRUNED)
        return len(records) == n

    result = units.train(f"tune/{number}", cand.label, spec, cand.program, configs,
                         [TUNE_SEED] * n, on_eval)
    for i in range(n):
        if i in records:
            continue
        if result.error is not None:
            records[i] = TrialRecord(asked[i].number, configs[i], None, "error", last, rnd)
            study.tell(asked[i], state=optuna.trial.TrialState.FAIL)
            continue
        v = float(result.final_loss[i])
        if result.status[i] == OK and math.isfinite(v):
            records[i] = TrialRecord(asked[i].number, configs[i], v, "complete", steps, rnd)
            study.tell(asked[i], v)
        else:
            step = result.diverged_step[i] or last
            records[i] = TrialRecord(asked[i].number, configs[i], math.inf, "diverged", step, rnd)
            study.tell(asked[i], math.inf)
    return [records[i] for i in range(n)], result.error
