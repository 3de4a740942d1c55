"""Train ``K`` replicas of a task with a program optimizer in one batched loop.

Each step: the minibatch loss of every replica ``(K,)``; divergence check;
backward of the sum over live replicas; optional per-replica gradient
clipping; the scheduled per-replica learning rate; one optimizer step.

Divergence. Replica ``k`` diverges at step ``t`` when its loss is NaN or
``inf`` or exceeds ``explode`` (default 1e3) times ``max(|L_k(1)|, 1e-8)``,
its loss at the first step, or when its validation loss is not finite. It is
then frozen: its loss is left out of the backward pass (``torch.where``, so
NaN cannot reach the sum), its gradient is zeroed, its learning rate becomes
0, its optimizer state is zeroed and after every step its weights are reset
to their (finite) initial values, so that whatever the program computes for
it cannot disturb the others; it is reported ``diverged`` with the step and
reason, and its curves read NaN from then on. Replicas never interact: every
op of the model and of the optimizer is per replica.

A program that raises while building or stepping (``ProgramError``, or a
``RuntimeError``/``ArithmeticError`` from torch) ends the run with status
``error`` for every replica; nothing is raised. Bad arguments of ``train``
itself raise ``ValueError``/``KeyError``.

Memory: the first run makes the process keep freed memory for reuse
(:func:`~optforge.train.heap.keep_heap`), which spares the page faults of
allocating the same large activations at every step and evaluation.

Determinism: on CPU, the same seeds, hyperparameters and thread count
(``torch.set_num_threads``) give bit-identical curves.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from ..lang.errors import ProgramError
from ..lang.ir import Program
from ..optim import ProgramOptimizer
from ..tasks import Task, TaskInstance
from ..tasks import get as get_task
from ..tasks.base import mix
from .heap import keep_heap
from .result import DIVERGED, ERROR, OK, TrainResult
from .schedule import multipliers

FAILURES = (ProgramError, RuntimeError, ArithmeticError)
RNG_TAG = 4  # stream tag of the global generator's seed during a run


def resolve_program(program: Program | str) -> Program:
    """A Program, program text (contains ``def``), or a zoo name or program file
    (:func:`optforge.zoo.resolve`)."""
    if isinstance(program, Program):
        return program
    if "def " in program:
        return Program.parse(program)
    from .. import zoo

    return zoo.resolve(program).program


def replica_hparams(hparams: Mapping[str, float | Sequence[float]] | None,
                    k: int) -> dict[str, list[float]]:
    """Each hyperparameter as a list of ``k`` finite floats (a scalar is repeated)."""
    out: dict[str, list[float]] = {}
    for name, value in (hparams or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values = [float(value)] * k
        elif isinstance(value, Sequence) and not isinstance(value, str):
            values = [float(v) for v in value]
            if len(values) != k:
                raise ValueError(f"hyperparameter {name!r} has {len(values)} values for "
                                 f"{k} replicas")
        else:
            raise ValueError(f"hyperparameter {name!r} must be a number or a list of {k}, "
                             f"got {value!r}")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"hyperparameter {name!r} has non-finite values {values}")
        out[name] = values
    out.setdefault("lr", [1e-3] * k)
    if any(v < 0 for v in out["lr"]):
        raise ValueError(f"learning rates must be non-negative, got {out['lr']}")
    return out


def clip_scale(grads: list[torch.Tensor], max_norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-replica global gradient norms ``(K,)`` and the factors ``min(1, max_norm / norm)``."""
    k = grads[0].shape[0]
    with torch.no_grad():
        norms = torch.stack([g.reshape(k, -1).square().sum(1) for g in grads]).sum(0).sqrt()
        return norms, (max_norm / (norms + 1e-6)).clamp(max=1.0)


def clip_per_replica(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale each replica's gradients (all its slices together) to global norm ``<= max_norm``.

    In place; returns the per-replica norms before clipping, ``(K,)``.
    """
    norms, scale = clip_scale(grads, max_norm)
    k = grads[0].shape[0]
    torch._foreach_mul_(grads, [scale.view(k, *([1] * (g.dim() - 1))) for g in grads])
    return norms


class _Guard:
    """Divergence detection and the freezing of diverged replicas (see the module docstring)."""

    def __init__(self, inst: TaskInstance, opt: ProgramOptimizer, lrs: list[float],
                 explode: float):
        self.inst, self.opt = inst, opt
        p0 = inst.params[0]
        self.k = inst.replicas
        self.device, self.dtype = p0.device, p0.dtype
        self.lrs = list(lrs)
        self.uniform_lr = len(set(lrs)) == 1
        self.active = torch.ones(self.k, dtype=torch.bool, device=self.device)
        self.any_frozen = False
        self.status = [OK] * self.k
        self.diverged_step: list[int | None] = [None] * self.k
        self.reason: list[str | None] = [None] * self.k
        self.explode = explode
        self.limit: torch.Tensor | None = None
        self.init = [p.detach().clone() for p in inst.params]

    def check(self, loss: torch.Tensor, step: int, training: bool = True) -> None:
        """Freeze live replicas whose loss is not finite or (training loss) has exploded.

        A training loss is checked between forward and backward: the frozen
        weights are restored after the step (the graph still holds them).
        """
        what = "training loss" if training else "validation loss"
        if training:
            if self.limit is None:  # the first training loss sets the scale
                limit = self.explode * loss.abs().clamp_min(1e-8)
                self.limit = torch.where(torch.isfinite(limit), limit, math.inf)
            bad = ~(loss <= self.limit)  # NaN compares false: bad
        else:
            bad = ~torch.isfinite(loss)
        if self.any_frozen:
            bad &= self.active
        if not bool(bad.any()):
            return
        for k in torch.nonzero(bad).flatten().tolist():
            v = float(loss[k])
            if math.isfinite(v):
                why = (f"{what} {v:.4g} exceeds {self.explode:g} x the initial loss "
                       f"{float(self.limit[k]) / self.explode:.4g}")
            else:
                why = f"{what} is {v}"
            self.status[k], self.diverged_step[k], self.reason[k] = DIVERGED, step, why
        self.active &= ~bad
        self.any_frozen = True
        self._zero_state(bad)
        if not training:
            self.restore()

    def _mask(self, t: torch.Tensor) -> torch.Tensor:
        return self.active.view(self.k, *([1] * (t.dim() - 1)))

    @torch.no_grad()
    def _zero_state(self, which: torch.Tensor) -> None:
        """Zero the optimizer state of replicas ``which``."""
        for p in self.inst.params:
            for value in self.opt.state.get(p, {}).values():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == self.k:
                    value[which] = 0

    @torch.no_grad()
    def restore(self) -> None:
        """Reset frozen replicas' weights to their initial values (never during a backward)."""
        for p, p0 in zip(self.inst.params, self.init, strict=True):
            p.copy_(torch.where(self._mask(p), p, p0))

    def total(self, loss: torch.Tensor) -> torch.Tensor:
        """The sum of live replicas' losses (``torch.where``: a NaN cannot reach the sum)."""
        if not self.any_frozen:
            return loss.sum()
        return torch.where(self.active, loss, torch.zeros_like(loss)).sum()

    def mask_grads(self) -> None:
        """Zero frozen replicas' gradients (out of place: they may carry a graph for ``h``)."""
        zero = torch.zeros((), dtype=self.dtype, device=self.device)
        for p in self.inst.params:
            if p.grad is not None:
                p.grad = torch.where(self._mask(p), p.grad, zero)

    def set_lr(self, factor: float) -> None:
        """Scheduled learning rates, computed in double and rounded once (0 when frozen)."""
        if self.uniform_lr and not self.any_frozen:
            lr: float | torch.Tensor = self.lrs[0] * factor
        else:
            lr = torch.tensor([b * factor if s == OK else 0.0
                               for b, s in zip(self.lrs, self.status, strict=True)],
                              dtype=self.dtype, device=self.device)
        for group in self.opt.param_groups:
            group["lr"] = lr


def _clip(params: list[torch.Tensor], max_norm: float) -> None:
    """Per-replica clipping, out of place when the gradients carry a graph (for ``h``)."""
    params = [p for p in params if p.grad is not None]
    if not params[0].grad.requires_grad:
        clip_per_replica([p.grad for p in params], max_norm)
        return
    _, scale = clip_scale([p.grad for p in params], max_norm)
    for p in params:
        p.grad = p.grad * scale.view(-1, *([1] * (p.dim() - 1)))


class _Curves:
    """Training losses, evaluations and timing of one run."""

    def __init__(self, task: Task, steps: int, k: int, eval_every: int, device):
        self.task = task
        self.eval_at = sorted({0, steps, *range(eval_every, steps + 1, eval_every)})
        self.losses = torch.full((steps, k), math.nan, dtype=torch.float64, device=device)
        self.eval_loss = np.full((len(self.eval_at), k), np.nan)
        self.eval_metric = np.full((len(self.eval_at), k), np.nan)
        self.n_eval = 0
        self.seconds = {"setup": 0.0, "eval": 0.0, "train": 0.0}

    def due(self, step: int) -> bool:
        return self.n_eval < len(self.eval_at) and step == self.eval_at[self.n_eval]

    def evaluate(self, guard: _Guard, step: int) -> None:
        start = time.perf_counter()
        ev = guard.inst.evaluate()
        guard.check(ev["loss"].detach(), step, training=False)
        live = guard.active.cpu().numpy()
        for out, key in ((self.eval_loss, "loss"), (self.eval_metric, self.task.metric)):
            out[self.n_eval] = np.where(live, ev[key].double().cpu().numpy(), np.nan)
        self.n_eval += 1
        self.seconds["eval"] += time.perf_counter() - start

    def train_loss(self, guard: _Guard | None) -> np.ndarray:
        out = self.losses.cpu().numpy()
        for k, s in enumerate(guard.diverged_step if guard else []):
            if s is not None:
                out[s - 1:, k] = np.nan
        return out


def _build(task: Task, prog: Program, tier: str, seeds: list[int], hp: dict[str, list[float]],
           device, dtype, compile: bool = False) -> tuple[TaskInstance, ProgramOptimizer]:
    unknown = set(hp) - {"lr"} - set(prog.hyperparameters)
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {sorted(unknown)} for program "
                         f"{prog.name!r}; it takes {sorted(prog.hyperparameters) or 'none'}")
    inst = task.instantiate(tier, seeds, device, dtype)
    # one value where all replicas agree: the optimizer then computes with a scalar
    values = {name: (v[0] if len(set(v)) == 1 else v) for name, v in hp.items()}
    opt = ProgramOptimizer(inst.params, prog, replicas=len(seeds), compile=compile, **values)
    return inst, opt


def train(task: Task | str, program: Program | str, tier: str = "tiny",
          seeds: Sequence[int] = (0,),
          hparams: Mapping[str, float | Sequence[float]] | None = None,
          steps: int | None = None, schedule: str = "cosine", warmup: int | float = 0.05,
          clip: float | None = None, eval_every: int | None = None,
          device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
          explode: float = 1e3, final_lr: float = 0.0, compile: bool = False,
          on_eval: Callable[[int, np.ndarray], bool] | None = None) -> TrainResult:
    """Train ``len(seeds)`` replicas of ``task`` at ``tier`` with ``program``.

    Args:
        task: a Task or its registered name.
        program: a Program, its text, or a zoo optimizer's name.
        seeds: one per replica (initialisation and data order).
        hparams: ``lr`` and the program's hyperparameters; each a number or a
            list of one value per replica (e.g. a learning-rate grid).
        steps: training steps (default: the tier's budget).
        schedule: ``constant``, ``cosine`` or ``linear`` after ``warmup``
            (a step count, or a fraction of ``steps``); ``final_lr`` is the
            fraction of the base rate reached at the last step.
        clip: per-replica global gradient-norm clipping threshold, or None.
        eval_every: validation period in steps (default ``steps // 10``);
            step 0 and the last step are always evaluated.
        explode: divergence threshold as a multiple of the initial loss.
        compile: run the optimizer step as compiled C (``docs/COMPILE.md``).
        on_eval: called after every evaluation with the step and the
            validation losses ``(K,)`` (NaN for frozen replicas); returning
            True stops the run there (``TrainResult.stopped_at``), for
            pruners and hurdles.
    """
    task = get_task(task) if isinstance(task, str) else task
    spec = task.spec(tier)
    seeds = [int(s) for s in seeds]
    k = len(seeds)
    if k == 0:
        raise ValueError("need at least one seed")
    steps = spec.steps if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    eval_every = max(1, steps // 10) if eval_every is None else int(eval_every)
    if eval_every < 1:
        raise ValueError(f"eval_every must be positive, got {eval_every}")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be positive, got {clip}")
    if not explode > 1:
        raise ValueError(f"explode must exceed 1, got {explode}")
    factors = multipliers(schedule, steps, warmup, final_lr)
    hp = replica_hparams(hparams, k)
    keep_heap()
    dev = torch.device(device)
    curves = _Curves(task, steps, k, eval_every, dev)
    source = str(program) if isinstance(program, Program) else program
    error: str | None = None
    guard: _Guard | None = None
    stopped_at: int | None = None
    t0 = time.perf_counter()
    # programs that read ``h`` draw Hutchinson probes from torch's global generator: seed it
    # from the replicas' seeds for reproducible runs, and give the caller's state back after
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(mix(*seeds, RNG_TAG))
        try:
            prog = resolve_program(program)
            source = str(prog)
            inst, opt = _build(task, prog, tier, seeds, hp, dev, dtype, compile)
            guard = _Guard(inst, opt, hp["lr"], explode)
            create_graph = prog.reads_hessian
            curves.seconds["setup"] = time.perf_counter() - t0

            def evaluate(step: int) -> bool:
                """Record an evaluation; True when ``on_eval`` asks to stop."""
                curves.evaluate(guard, step)
                losses = curves.eval_loss[curves.n_eval - 1].copy()
                return on_eval is not None and bool(on_eval(step, losses))

            stopped_at = 0 if evaluate(0) else None
            start, eval_before = time.perf_counter(), curves.seconds["eval"]
            for t in range(1, steps + 1):
                if stopped_at is not None:
                    break
                loss = inst.loss(t - 1)
                guard.check(loss.detach(), t)
                curves.losses[t - 1] = loss.detach()
                for p in inst.params:  # opt.zero_grad(set_to_none=True), without its
                    p.grad = None  # profiler scope: 0.1 ms a step
                guard.total(loss).backward(create_graph=create_graph)
                if guard.any_frozen:
                    guard.mask_grads()
                if clip is not None:
                    _clip(inst.params, clip)
                guard.set_lr(factors[t - 1])
                opt.step()
                if guard.any_frozen:
                    guard.restore()
                if curves.due(t) and evaluate(t):
                    stopped_at = t
            curves.seconds["train"] = (time.perf_counter() - start
                                       - (curves.seconds["eval"] - eval_before))
        except FAILURES as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            for p in guard.inst.params if guard else []:
                p.grad = None  # breaks the grad <-> parameter cycle of create_graph
    n = curves.n_eval
    return TrainResult(
        task=task.name, tier=tier, program=source, metric=task.metric,
        higher_is_better=task.higher_is_better, seeds=seeds, hparams=hp, steps=steps,
        schedule=schedule, train_loss=curves.train_loss(guard),
        eval_steps=np.array(curves.eval_at[:n]), eval_loss=curves.eval_loss[:n],
        eval_metric=curves.eval_metric[:n],
        status=[ERROR] * k if error else guard.status,
        diverged_step=guard.diverged_step if guard else [None] * k,
        reason=guard.reason if guard else [None] * k,
        wall_time=time.perf_counter() - t0, error=error, stopped_at=stopped_at,
        extra={"seconds": curves.seconds},
    )
