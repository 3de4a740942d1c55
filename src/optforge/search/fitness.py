"""Fitness: how good a candidate optimizer is, relative to tuned AdamW.

A *stage* is a set of tasks at one task tier (``tiny``, ``small``, ...) with
a step budget; the funnel's tiers and the held-out set are stages.

On a stage, :class:`TrainerFitness` trains the candidate on every task with a
small learning-rate grid ``lr_1 .. lr_K`` and ``S`` task seeds (``task_seeds``:
initialisation and data order) as ``K x S`` replicas of one batched run. A
rate's loss is the geometric mean over the seeds of the final validation
loss, ``L_{t,k} = exp(mean_s ln L_{t,k,s})``, and the task's loss is the best
rate's, ``L_t = min_k L_{t,k}``: one rate for all seeds, so a rate that is
lucky on one seed's noise cannot win alone. The baseline (``adamw`` from the
zoo by default) is trained the same way, on the same seeds, once per run,
``B_t = min_k B_{t,k}``. The per-task score and the fitness are::

    s_t = ln(B_t / L_t)            (> 0: better than tuned AdamW; 0.1 ~ 10% lower loss)
    fitness = min_t s_t            (aggregate = "min"; or mean_t s_t with "mean")

``s_t`` is dimensionless (a log ratio to the tuned baseline on the same task),
so a task with large losses weighs no more than one with small losses.
``lr_width[t]`` reports the candidate's robustness to its learning rate: the
width in decades of the contiguous run of grid rates around the best whose
loss is within 10% of the best (``L_{t,k} <= 1.1 L_t``; 0: only the best rate).

Relative grids (``relative=True``): the grids are multipliers of each task's
recipe rate ``r_t`` (``task.spec(tier).adamw["lr"]``, the Spec's default 1e-3
where a task sets none), and the candidate and the baseline train on
``r_t x lr_k`` (tasks' natural rates differ by decades; one absolute grid
clips some of them). Recorded rates (``best_lr``, ``Baseline.lr``) are
absolute; ``lr_width`` is a ratio and unchanged.

Training is :func:`optforge.train.train` with its defaults (cosine schedule
with 5% warmup), the same for candidate and baseline. Higher is better. A
replica *diverges* as the trainer defines it (a non-finite loss, or one beyond
``divergence`` times its first loss); if every replica of a task diverges, the
candidate gets :data:`WORST` (``-inf``) and ``diverged``. A program that fails
to run gets WORST too, with the message.

Hurdles: at each checkpoint fraction ``c`` the candidate's score
``s_t(c) = ln(B_t(c) / L_t(c))`` is taken against the baseline's curve (at
its best final learning rate) at the same step. If it trails the hurdle
passed in (:mod:`optforge.search.hurdles`) training stops and the evaluation
is *incomplete*: its fitness aggregates the finished tasks' final scores with
``s_t(c)`` standing in for the stopped task and every task not yet trained.

Curves: each evaluation keeps, per trained task, the validation loss at every
evaluation step of its best replica (the best final learning rate; at a hurdle
stop, the best at that step) beside the tuned baseline's at its best rate
(``Evaluation.curves``), so that reports can draw them without training again.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from ..evaluation import WORST, Evaluation, Fitness  # noqa: F401 - Fitness: its old home
from ..lang.ir import Program
from . import hurdles as hurdles_mod

LOSS_FLOOR = 1e-30
"""Losses are floored here before taking logs (a loss of exactly 0 stays finite)."""


# ------------------------------------------------------------------- stages


@dataclass(frozen=True)
class Stage:
    """Tasks at one tier with an optional step budget (default: each task's own)."""

    name: str
    size: str
    tasks: tuple[str, ...]
    steps: int | None = None

    @classmethod
    def parse(cls, name: str, spec: str) -> Stage:
        """``"SIZE:TASK[,TASK...][@STEPS]"``, e.g. ``"tiny:quadratic,mlp@200"``."""
        text = spec.strip()
        steps = None
        if "@" in text:
            text, _, s = text.rpartition("@")
            if not s.strip().isdigit() or int(s) < 1:
                raise ValueError(f"stage {spec!r}: steps after '@' must be a positive integer")
            steps = int(s)
        size, sep, tasks = text.partition(":")
        names = tuple(t.strip() for t in tasks.split(",") if t.strip())
        if not sep or not size.strip() or not names:
            raise ValueError(f"stage {spec!r} is not of the form SIZE:TASK[,TASK...][@STEPS]")
        if len(set(names)) != len(names):
            raise ValueError(f"stage {spec!r} names a task twice")
        return cls(name, size.strip(), names, steps)

    def __str__(self) -> str:
        return f"{self.size}:{','.join(self.tasks)}" + (f"@{self.steps}" if self.steps else "")


# ---------------------------------------------------------------- scores


def score(baseline: float, loss: float) -> float:
    """``ln(baseline / loss)``; ``-inf`` for a non-finite loss."""
    if not math.isfinite(loss):
        return WORST
    return math.log(max(baseline, LOSS_FLOOR) / max(loss, LOSS_FLOOR))


def aggregate(scores: Sequence[float], how: str = "mean") -> float:
    if not scores:
        raise ValueError("no task scores to aggregate")
    if any(s == WORST for s in scores):
        return WORST
    if how == "mean":
        return math.fsum(scores) / len(scores)
    if how == "min":
        return min(scores)
    raise ValueError(f"unknown aggregate {how!r}; use 'mean' or 'min'")


class FunctionFitness:
    """Fitness from a plain function ``f(program, stage) -> float`` (tests, analytic searches)."""

    def __init__(self, fn: Callable[[Program, str], float]):
        self.fn = fn
        self.calls = 0

    def evaluate(self, program: Program, stage: str,
                 thresholds: Mapping[str, float] | None = None) -> Evaluation:
        self.calls += 1
        value = float(self.fn(program, stage))
        if math.isnan(value):
            value = WORST
        return Evaluation(value, diverged=value == WORST)


class TargetFitness:
    """Closeness in behaviour to a target program: a cheap, exact fitness.

    Both programs drive the same parameters (float64, shapes ``3 x 4`` and
    ``5``) for ``steps`` steps on a fixed noisy quadratic
    (``g = h * w + noise``), with the same learning rate; fitness is
    ``-mean_t mean((w_t - w*_t)^2)`` over the trajectories, 0 for a program
    that behaves like the target, :data:`WORST` when non-finite. Rediscovering
    a known optimizer from another one is a search with this fitness; the
    tests use it because equal behaviour gives bit-equal fitness.
    """

    def __init__(self, target: Program, steps: int = 10, lr: float = 0.05, seed: int = 0):
        self.target, self.steps, self.lr, self.seed = target, steps, lr, seed
        self.calls = 0
        self._ref = self.trajectory(target)

    def trajectory(self, program: Program) -> torch.Tensor:
        from ..optim import ProgramOptimizer

        gen = torch.Generator().manual_seed(self.seed)
        params = [torch.randn(s, generator=gen, dtype=torch.float64) for s in ((3, 4), (5,))]
        curv = [torch.rand(p.shape, generator=gen, dtype=torch.float64) + 0.1 for p in params]
        noise = [[torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.1
                  for p in params] for _ in range(self.steps)]
        opt = ProgramOptimizer(params, program, lr=self.lr)
        out = []
        for t in range(self.steps):
            for p, h, n in zip(params, curv, noise[t], strict=True):
                p.grad = h * p.detach() + n
            opt.step()
            out.append(torch.cat([p.detach().flatten() for p in params]))
        return torch.stack(out)

    def evaluate(self, program: Program, stage: str = "",
                 thresholds: Mapping[str, float] | None = None) -> Evaluation:
        self.calls += 1
        try:
            diff = float((self.trajectory(program) - self._ref).square().mean())
        except Exception as err:  # noqa: BLE001 - a failing program is the worst, not a crash
            return Evaluation(WORST, error=f"{type(err).__name__}: {err}")
        if not math.isfinite(diff):
            return Evaluation(WORST, diverged=True)
        return Evaluation(-diff)


# ---------------------------------------------------------------- training


def _best(losses) -> tuple[int, float]:
    """Index and value of the smallest finite loss (``(-1, inf)`` if none)."""
    finite = [(float(x), i) for i, x in enumerate(losses) if math.isfinite(float(x))]
    if not finite:
        return -1, math.inf
    x, i = min(finite)
    return i, x


def per_rate(losses, seeds: int) -> list[float]:
    """Replica losses ordered rate-major (``k * seeds + s``) -> one loss per rate: the
    geometric mean over the seeds (``inf`` where a seed's loss is not finite)."""
    values = [float(x) for x in losses]
    if seeds == 1:
        return [x if math.isfinite(x) else math.inf for x in values]
    out = []
    for k in range(len(values) // seeds):
        row = values[k * seeds:(k + 1) * seeds]
        if all(math.isfinite(x) for x in row):
            out.append(math.exp(math.fsum(math.log(max(x, LOSS_FLOOR)) for x in row) / seeds))
        else:
            out.append(math.inf)
    return out


def lr_width(losses: Sequence[float], grid: Sequence[float], within: float = 0.1) -> float:
    """Decades spanned by the contiguous grid rates around the best whose loss is at most
    ``(1 + within)`` times the best (0 when only the best rate qualifies, or none is finite)."""
    i, best = _best(losses)
    if i < 0:
        return 0.0
    ok = [math.isfinite(x) and x <= best * (1 + within) for x in losses]
    lo = hi = i
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi < len(ok) - 1 and ok[hi + 1]:
        hi += 1
    return math.log10(grid[hi] / grid[lo])


def _curve(result, base: Baseline, seeds: int = 1) -> dict | None:
    """The validation curve of the rate with the best final loss, and the baseline's."""
    if result.error is not None or not len(result.eval_steps):
        return None
    i, _ = _best(per_rate(result.final_loss, seeds))
    if i < 0:
        return None
    steps = [int(s) for s in result.eval_steps]
    out = {"steps": steps, "loss": [per_rate(row[i * seeds:(i + 1) * seeds], seeds)[0]
                                    for row in result.eval_loss]}
    ref = dict(base.curve)
    if ref and all(s in ref for s in steps):
        out["baseline"] = [ref[s] for s in steps]
    return out


@dataclass(frozen=True)
class Baseline:
    """Tuned baseline on one task: best learning rate, its final and checkpoint losses,
    and its validation curve at that rate (``(step, loss)`` pairs; empty if unknown)."""

    lr: float
    final: float
    at: dict[float, float]
    curve: tuple[tuple[int, float], ...] = ()


class TrainerFitness:
    """Fitness by training with :func:`optforge.train.train` (see the module docstring).

    Args:
        stages: the stages by name.
        lr_grid: the candidate's learning rates (K replicas of one run).
        baseline: the baseline program, tuned over ``baseline_lr_grid``.
        checkpoints: hurdle fractions of each task's steps.
        aggregate: ``"mean"`` or ``"min"`` over tasks.
        divergence: the trainer's ``explode`` factor (loss growth that counts
            as divergence).
        task_seed: seed of every task's initialisation and data (``task_seeds`` unset).
        task_seeds: the seeds every rate is trained on (replicas); the loss of a rate is
            the geometric mean over them.
        train_options: further keyword arguments of ``train`` (``schedule``,
            ``warmup``, ``clip``, ...), the same for candidates and baseline.
        compile: the compiled optimizer step (docs/COMPILE.md) per stage: ``"auto"``
            where it amortises its build (:mod:`optforge.train.amortise`: the stage's
            training steps per evaluation), True, or False; for candidates and baseline
            alike. Programs it cannot express run eagerly, silently.
        relative: the grids are multipliers of each task's AdamW recipe rate at the
            stage's tier (:meth:`rates`), not learning rates.
    """

    def __init__(self, stages: Mapping[str, Stage], lr_grid: Sequence[float], baseline: Program,
                 baseline_lr_grid: Sequence[float], checkpoints: Sequence[float] = (),
                 aggregate: str = "mean", divergence: float = 1e3, task_seed: int = 0,
                 device: str = "cpu", dtype: torch.dtype = torch.float32,
                 train_options: Mapping | None = None, task_seeds: Sequence[int] = (),
                 compile: str | bool = False, relative: bool = False):
        from ..train import amortise

        for name, grid in (("lr_grid", lr_grid), ("baseline_lr_grid", baseline_lr_grid)):
            if not grid or any(not (x > 0 and math.isfinite(x)) for x in grid):
                raise ValueError(f"{name} must be positive, got {list(grid)}")
        if not divergence > 1:
            raise ValueError(f"divergence must be > 1, got {divergence}")
        if aggregate not in ("mean", "min"):
            raise ValueError(f"unknown aggregate {aggregate!r}; use 'mean' or 'min'")
        self.stages = dict(stages)
        self.lr_grid = tuple(sorted(float(x) for x in lr_grid))  # increasing: lr_width
        self.baseline_program = baseline
        self.baseline_lr_grid = tuple(sorted(float(x) for x in baseline_lr_grid))
        self.relative = bool(relative)
        self.checkpoints = hurdles_mod.fractions(checkpoints)
        self.aggregate = aggregate
        self.divergence = divergence
        self.task_seed = task_seed
        self.task_seeds = tuple(int(s) for s in task_seeds) or (task_seed,)
        if len(set(self.task_seeds)) != len(self.task_seeds):
            raise ValueError(f"task_seeds must be distinct, got {list(self.task_seeds)}")
        self.device, self.dtype = device, dtype
        self.train_options = dict(train_options or {})
        self.compile = amortise.mode(compile)
        if any(self.compiles(st) for st in self.stages.values()):
            from ..optim.ckernel import KernelCompileError, _kernel_compiler

            try:
                _kernel_compiler()
            except KernelCompileError as err:  # said once here, not per candidate
                warnings.warn(f"compile: {err}; the search trains eagerly", stacklevel=2)
        self.baselines: dict[tuple[str, str, int], Baseline] = {}

    # ---- helpers
    def _stage(self, name: str) -> Stage:
        try:
            return self.stages[name]
        except KeyError:
            raise KeyError(f"no stage {name!r}; stages: {list(self.stages)}") from None

    def _steps(self, stage: Stage, task: str) -> int:
        from .. import tasks

        return stage.steps or tasks.get(task).spec(stage.size).steps

    def rates(self, stage: Stage, task: str, grid: Sequence[float]) -> tuple[float, ...]:
        """The learning rates ``grid`` stands for on ``task``: the grid itself, or with
        ``relative`` each point times the task's recipe rate at ``stage``'s tier,
        ``r_t x lr_k`` (``r_t = spec.adamw["lr"]``, the Spec's default where unset)."""
        if not self.relative:
            return tuple(grid)
        from .. import tasks
        from ..tasks.base import DEFAULT_LR

        recipe = tasks.get(task).spec(stage.size).adamw.get("lr", DEFAULT_LR)
        return tuple(float(recipe) * x for x in grid)

    def compiles(self, stage: Stage) -> bool:
        """Whether ``stage`` trains with the compiled step (see ``compile``)."""
        from ..train import amortise

        if self.compile != "auto":
            return self.compile == "true"
        return amortise.compiles("auto", sum(self._steps(stage, t) for t in stage.tasks))

    @staticmethod
    def eval_every(steps: int) -> int:
        return max(1, steps // 20)

    def points(self, steps: int) -> dict[int, float]:
        """Hurdle checkpoint step -> fraction: validation steps strictly inside the run."""
        every = self.eval_every(steps)
        out: dict[int, float] = {}
        for f in self.checkpoints:
            s = every * max(1, round(f * steps / every))
            if s < steps:
                out.setdefault(s, f)
        return out

    def _train(self, task, stage: Stage, program: Program, lrs: Sequence[float], steps: int,
               on_eval=None):
        from ..train import train

        seeds = self.task_seeds
        options = {"compile": self.compiles(stage), **self.train_options}
        with warnings.catch_warnings():  # a program with matrix ops runs eagerly, silently
            warnings.filterwarnings("ignore", "compile=True: program", UserWarning)
            return train(task, program, stage.size, seeds=[s for _ in lrs for s in seeds],
                         hparams={"lr": [lr for lr in lrs for _ in seeds]}, steps=steps,
                         eval_every=self.eval_every(steps),
                         device=self.device, dtype=self.dtype, explode=self.divergence,
                         on_eval=on_eval, **options)

    def baseline(self, stage: str, task: str) -> Baseline:
        """The tuned baseline on ``task`` at ``stage``'s tier (computed once, then cached)."""
        st = self._stage(stage)
        n = self._steps(st, task)
        cache_key = (task, st.size, n)
        if cache_key not in self.baselines:
            lrs = self.rates(st, task, self.baseline_lr_grid)
            result = self._train(task, st, self.baseline_program, lrs, n)
            s = len(self.task_seeds)
            i, final = _best(per_rate(result.final_loss, s))
            if i < 0:
                raise RuntimeError(f"the baseline {self.baseline_program.name!r} diverged at every "
                                   f"learning rate on {task!r} ({st.size}): {result.error or ''}")
            row = {int(s): j for j, s in enumerate(result.eval_steps)}
            rate = [per_rate(r[i * s:(i + 1) * s], s)[0] for r in result.eval_loss]
            at = {f: rate[row[p]] for p, f in self.points(n).items() if p in row}
            curve = tuple((int(p), x) for p, x in zip(result.eval_steps, rate, strict=True))
            self.baselines[cache_key] = Baseline(lrs[i], final, at, curve)
        return self.baselines[cache_key]

    # ---- the fitness
    def evaluate(self, program: Program, stage: str,
                 thresholds: Mapping[str, float] | None = None) -> Evaluation:

        st = self._stage(stage)
        thresholds = thresholds or {}
        start = time.perf_counter()
        scores: dict[str, float] = {}
        losses: dict[str, float] = {}
        best_lr: dict[str, float] = {}
        checkpoints: dict[str, float] = {}
        curves: dict[str, dict] = {}
        widths: dict[str, float] = {}
        cost = 0.0
        n_seeds = len(self.task_seeds)

        def done(fitness: float, **kw) -> Evaluation:
            return Evaluation(fitness, scores=scores, losses=losses, best_lr=best_lr,
                              checkpoints=checkpoints, cost=cost,
                              seconds=time.perf_counter() - start, curves=curves,
                              lr_width=widths, **kw)

        for task in st.tasks:
            base = self.baseline(stage, task)
            n = self._steps(st, task)
            points = self.points(n)
            stop: list[tuple[int, float]] = []

            def watch(step: int, step_losses, task=task, base=base, points=points,
                      stop=stop) -> bool:
                f = points.get(step)
                if f is None or f not in base.at:
                    return False
                s = score(base.at[f], _best(per_rate(step_losses, n_seeds))[1])
                checkpoints[hurdles_mod.key(task, f)] = s
                if hurdles_mod.trails(s, task, f, thresholds):
                    stop.append((step, s))
                    return True
                return False

            lrs = self.rates(st, task, self.lr_grid)
            result = self._train(task, st, program, lrs, n, on_eval=watch)
            curve = _curve(result, base, n_seeds)
            if curve is not None:
                curves[task] = curve
            if stop:
                step, s = stop[0]
                cost += step * len(self.lr_grid) * n_seeds
                rest = [s] * (len(st.tasks) - len(scores))
                return done(aggregate(list(scores.values()) + rest, self.aggregate),
                            complete=False, stopped=hurdles_mod.key(task, points[step]))
            cost += n * len(self.lr_grid) * n_seeds
            if result.error is not None:
                scores[task] = WORST
                return done(WORST, error=f"{task}: {result.error}")
            rates = per_rate(result.final_loss, n_seeds)
            i, loss = _best(rates)
            losses[task] = loss
            if i < 0:
                scores[task] = WORST
                return done(WORST, diverged=True)
            best_lr[task] = lrs[i]
            widths[task] = lr_width(rates, lrs)
            scores[task] = score(base.final, loss)
        return done(aggregate(list(scores.values()), self.aggregate))
