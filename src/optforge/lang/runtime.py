"""Run a program over all parameters at once.

A program is compiled once into a linear plan of instructions over numbered
registers (three-address code with the nested expressions flattened). At each
step a register holds either

* a Python ``float`` (a uniform scalar: constants, hyperparameters, ``step``),
* a single tensor of shape ``(K, 1, 1)`` (a uniform per-replica scalar:
  per-replica hyperparameters, global reductions), or
* a list of tensors, one ``(K, R, C)`` 2-D view per parameter.

Element-wise ops on lists run as multi-tensor ``torch._foreach_*`` kernels;
uniform scalars are computed once per step, not once per tensor. Liveness is
known at compile time, so an element-wise op whose first operand dies at that
instruction and is owned by the step (a temporary, or a state slot overwritten
by it) runs in place, which is how ``m = interp(m, g, 1 - beta1)`` becomes one
``_foreach_lerp_`` on the stored moment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import ops
from .infer import infer
from .ir import Call, Const, Expr, Program, Var

Value = float | torch.Tensor | list


@dataclass(frozen=True)
class Instr:
    dest: int
    op: ops.Op
    args: tuple[int, ...]
    inplace: bool  # may overwrite register args[0]


_INPLACE = {
    "add": torch._foreach_add_, "sub": torch._foreach_sub_, "mul": torch._foreach_mul_,
    "div": torch._foreach_div_, "pow": torch._foreach_pow_, "neg": torch._foreach_neg_,
    "sign": torch._foreach_sign_, "abs": torch._foreach_abs_, "sqrt": torch._foreach_sqrt_,
    "exp": torch._foreach_exp_, "log": torch._foreach_log_, "reciprocal": torch._foreach_reciprocal_,
    "tanh": torch._foreach_tanh_, "sigmoid": torch._foreach_sigmoid_,
}


class Plan:
    """A compiled program: registers, instructions and where the outputs live."""

    def __init__(self, program: Program):
        self.program = program
        self.typing = infer(program)
        self.slot_shapes = self.typing.slot_shapes
        self.inputs = list(program.inputs)
        self.slots = list(program.slots)
        self.hyper = [k for k, _ in program.hyper]
        self.consts: dict[int, float] = {}
        self.instrs: list[Instr] = []
        names: dict[str, int] = {}
        self.n_regs = 0
        for name in [*self.inputs, *self.slots, *self.hyper]:
            names[name] = self._new()
        self.input_regs = {n: names[n] for n in self.inputs}
        self.slot_regs = [names[s] for s in self.slots]
        self.hyper_regs = {k: names[k] for k in self.hyper}
        raw: list[tuple[int, ops.Op, tuple[int, ...]]] = []
        for stmt in program.body:
            names[stmt.target] = self._flatten(stmt.expr, names, raw)
        self.outputs = [self._flatten(e, names, raw) for e in program.returns]
        self._schedule(raw)
        self.clone_slot = self._clone_slots()

    def _new(self) -> int:
        self.n_regs += 1
        return self.n_regs - 1

    def _flatten(self, e: Expr, names: dict[str, int], raw: list) -> int:
        if isinstance(e, Var):
            return names[e.name]
        if isinstance(e, Const):
            r = self._new()
            self.consts[r] = float(e.value)
            return r
        assert isinstance(e, Call)
        args = tuple(self._flatten(a, names, raw) for a in e.args)
        r = self._new()
        raw.append((r, ops.REGISTRY[e.op], args))
        return r

    def _clone_slots(self) -> list[bool]:
        """Slot outputs that would alias an input, a view or another slot's output."""
        transposes = {i.dest for i in self.instrs if i.op.name == "transpose"}
        seen: set[int] = set()
        out = []
        for r in self.outputs[1:]:
            out.append(r in seen or r in transposes or r in self.input_regs.values())
            seen.add(r)
        return out

    def _schedule(self, raw) -> None:
        """Decide which instructions may run in place (liveness analysis)."""
        last_use: dict[int, int] = {}
        for i, (_, _, args) in enumerate(raw):
            for a in args:
                last_use[a] = i
        for r in self.outputs:
            last_use[r] = len(raw)  # outputs live past the end
        owned = set(self.slot_regs)  # slots are the optimizer's own tensors
        for i, (dest, op, args) in enumerate(raw):
            if op.commutative and args[1] in owned and last_use.get(args[1]) == i:
                args = (args[1], args[0])  # put the dying operand first to reuse it
            first = args[0] if args else None
            can = (
                op.name in _INPLACE
                and first is not None
                and first in owned
                and last_use.get(first) == i
                and args.count(first) == 1
            )
            self.instrs.append(Instr(dest, op, args, can))
            if op.name != "transpose":  # a view of its operand, never written in place
                owned.add(dest)
        self.last_use = last_use


def _is_list(x) -> bool:
    return isinstance(x, list)


def _as_tensor(x: Value, like: torch.Tensor) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.tensor(x, dtype=like.dtype, device=like.device)


def apply_op(op: ops.Op, args: list[Value], like: torch.Tensor) -> Value:
    """Evaluate one op on register values (see module docstring for the kinds)."""
    lists = [a for a in args if _is_list(a)]
    if op.family == "global":
        x = args[0]
        return op.fn(x) if _is_list(x) else op.fn([_as_tensor(x, like).reshape(-1, 1, 1)])
    if not lists:  # a uniform value
        if op.scalar is not None and all(isinstance(a, float) for a in args):
            return float(op.scalar(*args))
        tensors = [_as_tensor(a, like).reshape(-1, 1, 1) for a in args]
        return op.fn(*tensors)
    if op.foreach is not None and op.family == "elementwise":
        fe_args = [a if _is_list(a) or isinstance(a, float) else [a] * len(lists[0]) for a in args]
        out = op.foreach(*fe_args)
        if out is not None:
            return list(out)
    n = len(lists[0])
    cols = [a if _is_list(a) else [_as_tensor(a, like)] * n for a in args]
    return [op.fn(*row) for row in zip(*cols, strict=True)]


def apply_inplace(op: ops.Op, args: list[Value]) -> Value:
    target = args[0]
    rest = [a if _is_list(a) or isinstance(a, float) else [a] * len(target) for a in args[1:]]
    _INPLACE[op.name](target, *rest)
    return target


def run(plan: Plan, inputs: dict[str, Value], slots: list[Value], hyper: dict[str, Value],
        like: torch.Tensor) -> list[Value]:
    """Execute the plan; returns ``[update, *new_slots]`` as register values."""
    regs: list[Value] = [None] * plan.n_regs
    for name, r in plan.input_regs.items():
        regs[r] = inputs[name]
    for r, v in zip(plan.slot_regs, slots, strict=True):
        regs[r] = v
    for k, r in plan.hyper_regs.items():
        regs[r] = hyper[k]
    for r, v in plan.consts.items():
        regs[r] = v
    for ins in plan.instrs:
        args = [regs[a] for a in ins.args]
        if ins.inplace and _is_list(args[0]) and _inplace_ok(ins.op, args):
            regs[ins.dest] = apply_inplace(ins.op, args)
        else:
            regs[ins.dest] = apply_op(ins.op, args, like)
    return [regs[r] for r in plan.outputs]


def _inplace_ok(op: ops.Op, args: list[Value]) -> bool:
    """In place only when the result has the first operand's shape and dtype."""
    target = args[0]
    for a in args[1:]:
        if _is_list(a):
            if any(t.shape != x.shape or t.dtype != x.dtype for t, x in zip(target, a, strict=True)):
                return False
        elif isinstance(a, torch.Tensor):
            if a.dtype != target[0].dtype or a.shape[0] != target[0].shape[0] and a.numel() != 1:
                return False
        elif isinstance(a, float) and not math.isfinite(a) and op.name == "pow":
            return False
    return True
