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

Determinism: on CPU, the same seeds, hyperparameters and thread count
(``torch.set_num_threads``) give bit-identical curves.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..lang.errors import ProgramError
from ..lang.ir import Program
from ..optim import ProgramOptimizer
from ..tasks import Task, TaskInstance
from ..tasks import get as get_task
from .result import DIVERGED, ERROR, OK, TrainResult
from .schedule import multipliers

FAILURES = (ProgramError, RuntimeError, ArithmeticError)


def resolve_program(program: Program | str) -> Program:
    """A Program, program text (contains ``def``) or a zoo optimizer's name."""
    if isinstance(program, Program):
        return program
    if "def " in program:
        return Program.parse(program)
    from .. import zoo

    return zoo.load(program)


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


def clip_per_replica(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale each replica's gradients (all its slices together) to global norm ``<= max_norm``.

    Returns the per-replica norms before clipping, ``(K,)``.
    """
    k = grads[0].shape[0]
    sq = torch.stack([g.reshape(k, -1).square().sum(1) for g in grads]).sum(0)
    norms = sq.sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, [scale.view(k, *([1] * (g.dim() - 1))) for g in grads])
    return norms


class _Run:
    """The mutable state of one run (kept out of ``train`` for readability)."""

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
            mask = self.active.view(self.k, *([1] * (p.dim() - 1)))
            p.copy_(torch.where(mask, p, p0))

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

    @torch.no_grad()
    def mask_grads(self) -> None:
        for p in self.inst.params:
            if p.grad is not None:
                mask = self.active.view(self.k, *([1] * (p.dim() - 1)))
                p.grad.copy_(torch.where(mask, p.grad, torch.zeros((), dtype=p.dtype,
                                                                   device=p.device)))


def train(task: Task | str, program: Program | str, tier: str = "tiny",
          seeds: Sequence[int] = (0,),
          hparams: Mapping[str, float | Sequence[float]] | None = None,
          steps: int | None = None, schedule: str = "cosine", warmup: int | float = 0.05,
          clip: float | None = None, eval_every: int | None = None,
          device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
          explode: float = 1e3, final_lr: float = 0.0) -> TrainResult:
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

    eval_at = sorted({0, steps, *range(eval_every, steps + 1, eval_every)})
    train_loss = np.full((steps, k), np.nan)
    eval_loss = np.full((len(eval_at), k), np.nan)
    eval_metric = np.full((len(eval_at), k), np.nan)
    n_eval = 0
    source = str(program) if isinstance(program, Program) else program
    error: str | None = None
    run: _Run | None = None
    losses: torch.Tensor | None = None
    t0 = time.perf_counter()
    times = {"setup": 0.0, "eval": 0.0, "train": 0.0}

    def record_eval(step: int) -> None:
        nonlocal n_eval
        start = time.perf_counter()
        ev = run.inst.evaluate()
        run.check(ev["loss"].detach(), step, training=False)
        live = run.active.cpu().numpy()
        eval_loss[n_eval] = np.where(live, ev["loss"].double().cpu().numpy(), np.nan)
        eval_metric[n_eval] = np.where(live, ev[task.metric].double().cpu().numpy(), np.nan)
        n_eval += 1
        times["eval"] += time.perf_counter() - start

    try:
        prog = resolve_program(program)
        source = str(prog)
        unknown = set(hp) - {"lr"} - set(prog.hyperparameters)
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {sorted(unknown)} for program "
                             f"{prog.name!r}; it takes {sorted(prog.hyperparameters) or 'none'}")
        inst = task.instantiate(tier, seeds, device, dtype)
        extra = {name: (v[0] if len(set(v)) == 1 else v) for name, v in hp.items() if name != "lr"}
        lrs = hp["lr"]
        opt = ProgramOptimizer(inst.params, prog, lr=lrs[0] if len(set(lrs)) == 1 else lrs,
                               replicas=k, **extra)
        run = _Run(inst, opt, lrs, explode)
        reads_h = prog.reads_hessian
        times["setup"] = time.perf_counter() - t0
        record_eval(0)
        loop_start, eval0 = time.perf_counter(), times["eval"]
        losses = torch.full((steps, k), math.nan, dtype=torch.float64, device=inst.params[0].device)
        for t in range(1, steps + 1):
            loss = inst.loss(t - 1)
            ld = loss.detach()
            run.check(ld, t)
            losses[t - 1] = ld
            if run.any_frozen:  # torch.where: a NaN loss cannot reach the sum
                total = torch.where(run.active, loss, torch.zeros_like(loss)).sum()
            else:
                total = loss.sum()
            opt.zero_grad(set_to_none=True)
            total.backward(create_graph=reads_h)
            if run.any_frozen:
                run.mask_grads()
            if clip is not None:
                clip_per_replica([p.grad for p in inst.params if p.grad is not None], clip)
            run.set_lr(factors[t - 1])
            opt.step()
            if run.any_frozen:
                run.restore()
            if t == eval_at[n_eval]:
                record_eval(t)
        times["train"] = time.perf_counter() - loop_start - (times["eval"] - eval0)
    except FAILURES as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if run is not None:
            for p in run.inst.params:
                p.grad = None
    if losses is not None:
        train_loss[:] = losses.cpu().numpy()
        for j, s in enumerate(run.diverged_step):
            if s is not None:
                train_loss[s - 1:, j] = np.nan
    status = [ERROR] * k if error else run.status
    return TrainResult(
        task=task.name, tier=tier, program=source, metric=task.metric,
        higher_is_better=task.higher_is_better, seeds=seeds, hparams=hp, steps=steps,
        schedule=schedule, train_loss=train_loss, eval_steps=np.array(eval_at[:n_eval]),
        eval_loss=eval_loss[:n_eval], eval_metric=eval_metric[:n_eval], status=status,
        diverged_step=run.diverged_step if run else [None] * k,
        reason=run.reason if run else [None] * k,
        wall_time=time.perf_counter() - t0, error=error, extra={"seconds": times},
    )
