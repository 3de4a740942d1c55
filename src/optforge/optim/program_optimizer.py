"""``ProgramOptimizer``: a real ``torch.optim.Optimizer`` that runs any program.

Each step, for every parameter group, the parameters that have a gradient
run through the compiled program all at once (:mod:`optforge.lang.runtime`):
one multi-tensor kernel per fused operation, ``w <- w - update`` applied in
place, state slots updated in their own tensors. Hyperparameters live in the
param groups, so they can differ per group and be changed between steps like
``lr``; with ``replicas=K`` any of them may be a sequence of K values, one per
replica.

Layout. A purely element-wise program (:attr:`Plan.native`) without replicas
runs on the parameters, gradients and slots in their own shapes. Any other
program sees each tensor as its ``(K, R, C)`` view (``K`` replicas, 1 unless
``replicas`` is given; ``R = shape[0]``, ``C`` the rest), so reductions and
matrix ops are per tensor and per replica. Full-size slots are stored in the
parameter's shape (``state[p]["m"].shape == p.shape``), reduced slots (a row
or column statistic) as ``(K, R, 1)`` / ``(K, 1, C)`` / ``(K, 1, 1)``.
Optimizer state is exactly the slots: ``slots x parameter bytes`` for
full-size slots, plus the integer ``step``.

Per-step work that would be a Python loop over tensors (grouping parameters by
device, dtype and step count, state lookups, views of slots) is cached per
param group and rebuilt when the set of parameters with a gradient
changes, on :meth:`add_param_group` and on :meth:`load_state_dict`. (State
tensors replaced by hand, ``opt.state[p]["m"] = t``, are not noticed: change
them in place.) Global reductions (``global_norm``) span the parameters of a
group that share device, dtype and step count, which is the whole group in
ordinary training.

Programs that read ``h`` get a Hutchinson estimate of the Hessian diagonal,
``h = z * (H z)``, refreshed every ``hessian_every`` steps; the gradients must
then be built with ``loss.backward(create_graph=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch

from ..lang.canon import state_hash
from ..lang.ir import Program
from ..lang.runtime import Plan, execute
from ..lang.shapes import FULL, view2d
from .compiled import compiled_step

_RESERVED = {"lr", "params"}


@dataclass(eq=False)
class _Bucket:
    """Parameters of one group stepped together (same device, dtype and step count),
    with everything a step needs that does not change between steps."""

    params: list[torch.Tensor]
    states: list[dict]
    step: int
    native: bool
    like: torch.Tensor  # dtype and device of per-replica scalars
    ws: list[torch.Tensor]  # the parameters (native layout; views are made per step)
    slots: list[list[torch.Tensor]]  # per slot, its tensors as the runtime sees them
    h: list[torch.Tensor] | None
    hyper: dict = field(default_factory=dict)  # name -> (value key, per-replica tensor)


class ProgramOptimizer(torch.optim.Optimizer):
    """Run ``program`` as an optimizer.

    Args:
        params: parameters or param-group dicts, as for any torch optimizer.
        program: a :class:`~optforge.lang.ir.Program` or its source text.
        lr: learning rate (the program's ``lr`` input), a float or, with
            ``replicas``, a sequence of one per replica.
        replicas: ``K`` when every parameter carries a leading replica axis of
            size K (K independent models trained in one batched pass):
            reductions are then taken per replica.
        hessian_every: refresh period of the Hessian-diagonal estimate ``h``.
        hessian_distribution: ``"rademacher"`` or ``"gaussian"``, the law of the
            Hutchinson probe ``z`` (see :meth:`_refresh_hessian`).
        compile: run the step as compiled C (:mod:`optforge.optim.compiled`):
            one fused pass over the entries of all tensors, plus one per level of
            per-tensor reductions; eager where it cannot (with a warning).
        **hyperparameters: values for the program's hyperparameters
            (defaults are those in the program's signature).

    Example::

        opt = ProgramOptimizer(model.parameters(), zoo.load("adamw"), lr=1e-3, wd=0.1)
        loss.backward(); opt.step(); opt.zero_grad()
    """

    def __init__(
        self,
        params: Iterable,
        program: Program | str,
        lr: float | Sequence[float] = 1e-3,
        *,
        replicas: int | None = None,
        hessian_every: int = 1,
        hessian_distribution: str = "rademacher",
        compile: bool = False,
        **hyperparameters,
    ):
        if isinstance(program, str):
            program = Program.parse(program)
        unknown = set(hyperparameters) - set(program.hyperparameters)
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {sorted(unknown)} for program {program.name!r}; "
                f"it takes {sorted(program.hyperparameters) or 'none'}"
            )
        if replicas is not None and (
            isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1
        ):
            raise ValueError(f"replicas must be a positive int, got {replicas!r}")
        if not isinstance(hessian_every, int) or hessian_every < 1:
            raise ValueError(f"hessian_every must be a positive int, got {hessian_every!r}")
        if hessian_distribution not in ("rademacher", "gaussian"):
            raise ValueError("hessian_distribution must be 'rademacher' or 'gaussian', got "
                             f"{hessian_distribution!r}")
        defaults = {"lr": lr, **program.hyperparameters, **hyperparameters}
        for name, value in defaults.items():
            _check_value(name, value, replicas)
        self.program = program
        self.replicas = replicas
        self.hessian_every = hessian_every
        self.hessian_distribution = hessian_distribution
        self.compile = compile
        self._compile()
        super().__init__(params, defaults)

    def _compile(self) -> None:
        self._plan = Plan(self.program)
        self._reads_h = self.program.reads_hessian
        self._native = self._plan.native and self.replicas is None
        self._cache: dict[int, tuple[tuple[int, ...], list[_Bucket]]] = {}
        self._compiled = compiled_step(self._plan, self.replicas, self.program.name) \
            if getattr(self, "compile", False) else None

    _CONFIG = ("program", "replicas", "hessian_every", "hessian_distribution", "compile")

    def __getstate__(self) -> dict:
        """Pickling and ``copy.deepcopy``: torch's state plus the program and options."""
        return {**super().__getstate__(), **{k: getattr(self, k) for k in self._CONFIG}}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._compile()

    def add_param_group(self, param_group: dict) -> None:
        """As torch's, checking hyperparameter values and replica axes."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            for name in self.defaults:
                _check_value(name, group[name], self.replicas)
            if any(p.is_complex() for p in group["params"]):
                raise ValueError("ProgramOptimizer does not support complex parameters; "
                                 "optimize their torch.view_as_real views instead")
            if self.replicas is not None:
                for p in group["params"]:
                    if p.dim() == 0 or p.shape[0] != self.replicas:
                        raise ValueError(
                            f"with replicas={self.replicas} every parameter needs a leading "
                            f"axis of that size; got shape {tuple(p.shape)}"
                        )
        except ValueError:
            self.param_groups.pop()  # a rejected group is not kept
            raise
        self._cache.clear()

    # ------------------------------------------------------------ the step
    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        """One update of every parameter with a gradient; returns ``closure()``'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._reads_h:
            self._refresh_hessian()
        for index, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            key = tuple(map(id, params))
            cached = self._cache.get(index)
            if cached is None or cached[0] != key:
                cached = self._cache[index] = (key, self._buckets(params))
            for bucket in cached[1]:
                self._step_bucket(group, bucket)
        return loss

    def _step_bucket(self, group: dict, b: _Bucket) -> None:
        if self._compiled is not None:
            if self._compiled.run(b, group, b.step + 1):
                return self._advance(b)
            self._compiled.forget(b)  # the eager step may replace state tensors
        plan = self._plan
        gs = [p.grad for p in b.params]
        if any(g.is_sparse for g in gs):
            raise RuntimeError("ProgramOptimizer does not support sparse gradients")
        ws, copied = b.ws, []
        if not b.native:  # fresh views: a parameter's .data may have been swapped
            views = [self._view(p) for p in b.params]
            ws = [v for v, _ in views]
            copied = [i for i, (_, c) in enumerate(views) if c]  # stepped on a copy
            gs = [self._view(g)[0] for g in gs]
        step = b.step + 1
        values = {}
        regs = plan.input_regs
        if "w" in regs:
            values[regs["w"]] = ws
        values[regs["g"]] = gs
        if "h" in regs:
            values[regs["h"]] = b.h
        if "lr" in regs:
            values[regs["lr"]] = self._hyper(b, "lr", group["lr"])
        if "step" in regs:
            values[regs["step"]] = float(step)
        for k, r in plan.hyper_regs.items():
            values[r] = self._hyper(b, k, group[k])
        for r, tensors in zip(plan.slot_regs, b.slots, strict=True):
            values[r] = tensors
        trace, out = execute(plan, values, len(b.params), b.like, params=ws)
        for i in copied:
            b.params[i].copy_(ws[i].view_as(b.params[i]))
        for i, where in enumerate(trace.slots):
            if where is not None:
                self._store(b, i, out[where])
        self._advance(b)

    @staticmethod
    def _advance(b: _Bucket) -> None:
        b.step += 1
        for state in b.states:
            state["step"] = b.step

    # ------------------------------------------------------------ layout
    def _buckets(self, params: list[torch.Tensor]) -> list[_Bucket]:
        """Group ``params`` by device, dtype and step count, with cached views."""
        by_key: dict[tuple, list[torch.Tensor]] = {}
        for p in params:
            state = self.state[p]
            if not state:
                self._init_state(p, state)
            by_key.setdefault((p.device, p.dtype, state["step"]), []).append(p)
        buckets = []
        for (device, dtype, step), ps in by_key.items():
            states = [self.state[p] for p in ps]
            compute = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
            like = torch.empty(0, dtype=compute, device=device)
            if self._native:
                slots = [[st[s] for st in states] for s in self._plan.slots]
                h = [st["h"].view(p.shape) for p, st in zip(ps, states, strict=True)] \
                    if self._reads_h else None
            else:
                slots = [[self._slot_view(st[s], s) for st in states] for s in self._plan.slots]
                h = [st["h"] for st in states] if self._reads_h else None
            buckets.append(_Bucket(ps, states, step, self._native, like, list(ps), slots, h))
        return buckets

    def _view(self, t: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """``(K, R, C)`` view of a parameter or gradient (a copy if not contiguous)."""
        k = self.replicas or 1
        shape = t.shape[1:] if self.replicas else t.shape
        r, c = view2d(tuple(shape))
        if t.is_contiguous():
            return t.view(k, r, c), False
        return t.contiguous().view(k, r, c), True

    def _slot_view(self, t: torch.Tensor, slot: str) -> torch.Tensor:
        """A stored slot as the runtime sees it: full-size slots as (K, R, C) views."""
        return self._view(t)[0] if self._plan.slot_shapes[slot] == FULL else t

    def _init_state(self, p: torch.Tensor, state: dict) -> None:
        """Zero slots: full-size ones in the parameter's shape, reduced ones (K, ., .)."""
        k = self.replicas or 1
        r, c = view2d(tuple(p.shape[1:] if self.replicas else p.shape))
        size = {"R": r, "C": c, 1: 1}
        state["step"] = 0
        for s, (dr, dc) in self._plan.slot_shapes.items():
            shape = p.shape if (dr, dc) == FULL else (k, size[dr], size[dc])
            state[s] = torch.zeros(shape, dtype=p.dtype, device=p.device)
        if self._reads_h:
            state["h"] = torch.zeros((k, r, c), dtype=p.dtype, device=p.device)

    def _store(self, b: _Bucket, index: int, value) -> None:
        """A slot's new value that is not in its own tensors: keep it as the new state."""
        name = self._plan.slots[index]
        if not isinstance(value, list | tuple):
            # a uniform value, in new tensors: the slot's old tensors may have been
            # handed to another slot by this very step
            value = [torch.as_tensor(value, dtype=t.dtype, device=t.device).expand_as(t).clone()
                     for t in b.slots[index]]
        tensors = []
        for p, st, t in zip(b.params, b.states, value, strict=True):
            t = t.to(p.dtype)
            if self._plan.slot_shapes[name] == FULL:
                st[name] = t.reshape(p.shape)
                t = st[name] if b.native else self._view(st[name])[0]
            else:
                st[name] = t
            tensors.append(t)
        b.slots[index] = tensors

    def _hyper(self, b: _Bucket, name: str, value):
        """A group value as a register value: a float, or with replicas always a
        ``(K, 1, 1)`` tensor (so that a replica's arithmetic, down to rounding,
        does not depend on whether the other replicas share its values)."""
        if self.replicas is None:  # a number or a 0-d tensor (read at every step)
            return float(value)
        if isinstance(value, int | float):
            key = (float(value),)
        elif isinstance(value, list | tuple):
            key = tuple(value)
        elif isinstance(value, torch.Tensor):
            key = (id(value), value._version)
        else:
            key = tuple(torch.as_tensor(value).flatten().tolist())
        cached = b.hyper.get(name)
        if cached is None or cached[0] != key:
            t = torch.as_tensor(value, dtype=b.like.dtype, device=b.like.device)
            t = t.reshape(-1, 1, 1).expand(self.replicas, 1, 1).contiguous()
            cached = b.hyper[name] = (key, t)
        return cached[1]

    def _refresh_hessian(self) -> None:
        """``h = z * (H z)`` for every parameter with a gradient (Hutchinson, one sample).

        The estimate is refreshed before steps 1, 1 + k, 1 + 2k, ... (``k =
        hessian_every``; the stored step count is a multiple of k) and held in
        between. ``z`` is drawn from the global torch generator, one draw per
        parameter in param-group order, Rademacher ``randint_like(p, 0, 2) * 2 - 1``
        or Gaussian ``randn_like(p)``: the schedule, law and order of
        pytorch_optimizer's ``compute_hutchinson_hessian`` (SophiaH, AdaHessian), so
        with the same seed both see the same ``z``. No spatial averaging.
        """
        params = [
            p for group in self.param_groups for p in group["params"] if p.grad is not None
        ]
        if not params:
            return
        for p in params:
            if not self.state[p]:
                self._init_state(p, self.state[p])
        step = self.state[params[0]]["step"]
        if step % self.hessian_every != 0:
            return
        if any(p.grad.grad_fn is None for p in params):
            raise RuntimeError(
                f"program {self.program.name!r} reads the Hessian estimate 'h': call "
                "loss.backward(create_graph=True) before step()"
            )
        if self.hessian_distribution == "gaussian":
            zs = [torch.randn_like(p) for p in params]
        else:
            zs = [torch.randint_like(p, 0, 2) * 2.0 - 1.0 for p in params]
        with torch.enable_grad():
            hzs = torch.autograd.grad([p.grad for p in params], params, grad_outputs=zs)
        for p, z, hz in zip(params, zs, hzs, strict=True):
            self.state[p]["h"].copy_(self._view(z * hz)[0])

    # ------------------------------------------------------------ state dict
    def state_dict(self):
        """As torch's, with the program (its source) and its state identity
        (:func:`~optforge.lang.canon.state_hash`, which exported classes check too)."""
        sd = super().state_dict()
        sd["program"] = str(self.program)
        sd["program_state"] = state_hash(self.program)
        return sd

    def load_state_dict(self, state_dict):
        """As torch's; ValueError for the state of another program or optimizer."""
        saved = state_dict.get("program_state")
        if saved is None and "program" in state_dict:  # saved before program_state existed
            saved = state_hash(Program.parse(state_dict["program"]))
        if saved != state_hash(self.program):
            raise ValueError("state_dict was saved by an optimizer running a different program"
                             if saved is not None else
                             "state_dict is not a ProgramOptimizer's or an exported optimizer's "
                             "(no program_state): it was saved by another optimizer")
        state_dict = {k: v for k, v in state_dict.items()
                      if k not in ("program", "program_state")}
        super().load_state_dict(state_dict)
        self._cache.clear()


def _check_value(name: str, value, replicas: int | None) -> None:
    """Hyperparameters are finite numbers (or 0-d tensors), or one per replica."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and replicas is None:
        if value.is_complex():
            raise ValueError(f"hyperparameter {name!r} must be real, got {value!r}")
        value = value.item()
    if isinstance(value, bool):
        raise ValueError(f"hyperparameter {name!r} must be a number, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"hyperparameter {name!r} must be finite, got {value!r}")
        if name == "lr" and value < 0:
            raise ValueError(f"invalid learning rate: {value}")
        return
    try:
        values = torch.as_tensor(value, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"hyperparameter {name!r} must be a number, got {value!r}") from None
    if replicas is None:
        raise ValueError(f"hyperparameter {name!r} is a sequence; pass replicas=K to use one "
                         "value per replica")
    if values.numel() != replicas:
        raise ValueError(f"hyperparameter {name!r} has {values.numel()} values for "
                         f"{replicas} replicas")
    if not torch.isfinite(values).all() or (name == "lr" and (values < 0).any()):
        raise ValueError(f"hyperparameter {name!r} has invalid values {values.tolist()}")
