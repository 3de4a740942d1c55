r"""Run a program over all parameters at once.

Compilation has two stages.

1. :class:`Plan` flattens the program into three-address code over numbered
   registers and records each register's abstract shape, whether it is
   uniform (the same for every parameter) and how often it is read.
2. :meth:`Plan.trace` specialises the plan to the kinds of its inputs (is a
   uniform input a Python float or a per-replica ``(K, 1, 1)`` tensor) and to
   what becomes of the update (returned, or applied to the parameters in
   place): :mod:`optforge.lang.fuse` runs the plan once on symbolic values and
   records a flat list of fused multi-tensor kernel calls, a
   :class:`~optforge.lang.fuse.Trace`, which every later step replays. Per
   step there is no analysis left, only float arithmetic for the uniform
   scalars and one ``torch._foreach_*`` call per fused operation.

At run time a register holds a Python ``float``, a ``(K, 1, 1)`` tensor (a
per-replica uniform value) or a list of tensors, one per parameter: its
``(K, R, C)`` view, or the parameter's own shape when the program is purely
element-wise (:attr:`Plan.native`).

    >>> plan = Plan(Program.parse(
    ...     "def sgdm(w, g, m, lr, mu=0.9):\n    m = mu * m + g\n    return lr * m, m\n"))
    >>> ws = [torch.ones(1, 2, 3)]
    >>> update, m = run(plan, {"w": ws, "g": [torch.ones(1, 2, 3)], "lr": 0.5},
    ...                 [[torch.zeros(1, 2, 3)]], {"mu": 0.9}, ws[0])
    >>> update[0][0, 0].tolist(), m[0][0, 0].tolist()
    ([0.5, 0.5, 0.5], [1.0, 1.0, 1.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import ops
from .fuse import Trace, trace
from .infer import infer
from .ir import Call, Const, Expr, Program, Var
from .kernels import LIKE_REG, N_REG, W_REG, Value, scalar_tensor
from .shapes import FULL, SCALAR, Shape


@dataclass(frozen=True)
class Instr:
    dest: int
    op: ops.Op
    args: tuple[int, ...]


class Plan:
    """A compiled program: registers, instructions, outputs and register facts."""

    def __init__(self, program: Program):
        self.program = program
        self.typing = infer(program)
        self.slot_shapes = self.typing.slot_shapes
        self.inputs = list(program.inputs)
        self.slots = list(program.slots)
        self.hyper = [k for k, _ in program.hyper]
        self.consts: dict[int, float] = {}
        self.instrs: list[Instr] = []
        self.shape: list[Shape] = []
        self.uniform: list[bool] = []
        self.instr_stmt: list[int] = []  # the program statement of each instruction
        self._stmt = 0
        names: dict[str, int] = {}
        for name in self.inputs:
            names[name] = self._new(SCALAR if name in ("lr", "step") else FULL,
                                    name in ("lr", "step"))
        for name in self.slots:
            names[name] = self._new(self.slot_shapes[name], False)
        for name in self.hyper:
            names[name] = self._new(SCALAR, True)
        self.input_regs = {n: names[n] for n in self.inputs}
        self.slot_regs = [names[s] for s in self.slots]
        self.hyper_regs = {k: names[k] for k in self.hyper}
        self.stmt_value: dict[int, int] = {}  # register -> the statement it is the value of
        for i, stmt in enumerate(program.body):
            self._stmt = i
            names[stmt.target] = self._flatten(stmt.expr, names)
            self.stmt_value.setdefault(names[stmt.target], i)
        self._stmt = len(program.body)
        self.outputs = [self._flatten(e, names) for e in program.returns]
        self.uses = [0] * self.n_regs
        self.last_use: dict[int, int] = {}
        for i, ins in enumerate(self.instrs):
            for a in ins.args:
                self.uses[a] += 1
                self.last_use[a] = i
        for r in self.outputs:
            self.uses[r] += 1
            self.last_use[r] = len(self.instrs)  # outputs live past the end
        self.native = all(
            ins.op.family == "elementwise" and ins.op.scalar is not None for ins in self.instrs
        ) and all(u or s == FULL for u, s in zip(self.uniform, self.shape, strict=True))
        """Purely element-wise on full-shape values: runnable on the parameters'
        own shapes, without ``(K, R, C)`` views (when there is no replica axis)."""
        self._traces: dict[tuple, Trace] = {}

    @property
    def n_regs(self) -> int:
        return len(self.shape)

    def _new(self, shape: Shape, uniform: bool) -> int:
        self.shape.append(shape)
        self.uniform.append(uniform)
        return len(self.shape) - 1

    def _flatten(self, e: Expr, names: dict[str, int]) -> int:
        if isinstance(e, Var):
            return names[e.name]
        if isinstance(e, Const):
            r = self._new(SCALAR, True)
            self.consts[r] = float(e.value)
            return r
        assert isinstance(e, Call)
        op = ops.REGISTRY[e.op]
        args = tuple(self._flatten(a, names) for a in e.args)
        shape = op.shape(*(self.shape[a] for a in args))
        r = self._new(shape, op.uniform(*(self.uniform[a] for a in args)))
        self.instrs.append(Instr(r, op, args))
        self.instr_stmt.append(self._stmt)
        return r

    def trace(self, kinds: dict[int, str], apply: bool) -> Trace:
        """The plan specialised to input kinds (register -> ``'f'`` float, ``'t'``
        tensor, ``'L'`` list); with ``apply`` the update is subtracted from ``w``
        in place instead of returned. Cached."""
        key = (apply, *kinds.items())
        found = self._traces.get(key)
        if found is None:
            found = self._traces[key] = trace(self, kinds, apply)
        return found


# ----------------------------------------------------------------- execution


def execute(plan: Plan, values: dict[int, Value], n: int, like: torch.Tensor,
            params: list | None = None) -> tuple[Trace, list]:
    """Run one step. ``values`` fills the plan's input, slot and hyperparameter
    registers (lists of ``n`` tensors, floats, or ``(K, 1, 1)`` tensors);
    ``like`` gives the dtype and device of per-replica scalars; with
    ``params`` the update is subtracted from them in place. Returns the trace
    and its registers (see :class:`Trace` for where the outputs are)."""
    kinds = {r: "L" if isinstance(v, list | tuple) else "t" if isinstance(v, torch.Tensor)
             else "f" for r, v in values.items()}
    trace = plan.trace(kinds, apply=params is not None)
    regs: list = [None] * trace.n_regs
    for r, v in values.items():
        regs[r] = v
    base = plan.n_regs
    regs[base + N_REG] = n
    regs[base + LIKE_REG] = like
    regs[base + W_REG] = params
    trace.run(regs)
    return trace, regs


def run(plan: Plan, inputs: dict[str, Value], slots: list[Value], hyper: dict[str, Value],
        like: torch.Tensor) -> list[Value]:
    """Execute the plan; returns ``[update, *new_slots]`` as register values.

    Slot tensors may be updated in place (they belong to the step)."""
    values: dict[int, Value] = {}
    for name, r in plan.input_regs.items():
        values[r] = inputs[name]
    for k, r in plan.hyper_regs.items():
        values[r] = hyper[k]
    values = {r: float(v) if isinstance(v, int | float) else v for r, v in values.items()}
    n = next((len(v) for v in (*values.values(), *slots) if isinstance(v, list)), 1)
    for r, v in zip(plan.slot_regs, slots, strict=True):  # one tensor per parameter
        v = v if isinstance(v, list) else [v] * n
        values[r] = [x if isinstance(x, torch.Tensor)
                     else scalar_tensor(float(x), like).reshape(1, 1, 1) for x in v]
    trace, regs = execute(plan, values, n, like)
    out = [regs[trace.update]]
    for r, s in zip(plan.slot_regs, trace.slots, strict=True):
        out.append(regs[r] if s is None else regs[s])
    return [list(v) if isinstance(v, tuple) else v for v in out]
