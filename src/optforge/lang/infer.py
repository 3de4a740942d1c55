"""Type and shape inference by abstract execution.

The program runs once over :class:`~optforge.lang.shapes.Abstract` values
instead of tensors: the parameter and gradient are ``R x C``, ``lr``,
``step`` and hyperparameters are uniform ``1 x 1`` scalars, and each state
slot starts as ``1 x 1`` and takes the shape of the value returned for it,
re-running until the slot shapes settle (so Adafactor's ``R x 1`` row moment
is a slot of reduced shape). Checks, each raising a located ProgramError:

* every name is defined before it is read and every op exists with the right arity;
* operand shapes combine (broadcasting, matmul inner dimensions);
* the update broadcasts to the parameter's shape;
* the update depends on the gradient ``g`` (directly or through state).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ops
from .errors import (
    ArityError,
    GradientIndependenceError,
    ShapeError,
    SignatureError,
    UnknownNameError,
    UnknownOpError,
)
from .ir import Const, Expr, Program, Var, names_read
from .shapes import FULL, SCALAR, Abstract, Shape, ShapeClash, broadcast, show

_INPUT_TYPES = {
    "w": Abstract(FULL, False, frozenset({"w"})),
    "g": Abstract(FULL, False, frozenset({"g"})),
    "h": Abstract(FULL, False, frozenset({"h"})),
    "lr": Abstract(SCALAR, True, frozenset({"lr"})),
    "step": Abstract(SCALAR, True, frozenset({"step"})),
}


@dataclass(frozen=True)
class Typing:
    """What inference found: every variable's final abstract value, slot shapes,
    and the inputs the update depends on across steps."""

    env: dict[str, Abstract]
    slot_shapes: dict[str, Shape]
    update: Abstract
    update_deps: frozenset[str]


def evaluate(e: Expr, env: dict[str, Abstract]) -> Abstract:
    """Abstract value of an expression."""
    if isinstance(e, Const):
        return Abstract(SCALAR, True)
    if isinstance(e, Var):
        if e.name not in env:
            raise UnknownNameError(f"name {e.name!r} is not defined", e.line, e.col, e.name)
        return env[e.name]
    op = ops.get(e.op)
    if op is None:
        raise UnknownOpError(f"unknown op {e.op!r}", e.line, e.col, e.op)
    if len(e.args) != op.arity:
        raise ArityError(f"op {e.op!r} takes {op.arity} argument(s), got {len(e.args)}",
                         e.line, e.col, e.op)
    args = [evaluate(a, env) for a in e.args]
    try:
        shape = op.shape(*(a.shape for a in args))
    except ShapeClash as clash:
        raise ShapeError(f"op {e.op!r}: {clash}", e.line, e.col, e.op) from None
    deps = frozenset().union(*(a.deps for a in args))
    return Abstract(shape, op.uniform(*(a.uniform for a in args)), deps)


class _Rounds:
    """Abstract runs of one program with given slot shapes, each after the first
    re-evaluating only the statements that read a value changed since the last run."""

    def __init__(self, program: Program):
        self.program = program
        self.reads = [frozenset(names_read(s.expr)) for s in program.body]
        self.out_reads = [frozenset(names_read(e)) for e in program.returns]
        self.last: list[Abstract | None] | None = None
        self.last_shapes: dict[str, Shape] = {}

    def run(self, shapes: dict[str, Shape], lenient: bool):
        """``(env, outs)``. With ``lenient``, a statement or output whose shapes clash is
        *unknown* (None) instead of an error, and so is anything computed from it: the
        slot shapes are still provisional, and a clash may be due to them alone."""
        program = self.program
        env: dict[str, Abstract | None] = {name: _INPUT_TYPES[name] for name in program.inputs}
        env.update({k: Abstract(SCALAR, True) for k, _ in program.hyper})
        env.update({s: Abstract(shapes[s], False, frozenset({s})) for s in program.slots})
        last = self.last if lenient else None
        dirty = {s for s in program.slots if self.last_shapes.get(s) != shapes[s]}

        def value(e: Expr, reads: frozenset[str]) -> Abstract | None:
            if not lenient:
                return evaluate(e, env)
            if any(env.get(n, _MISSING) is None for n in reads):
                return None
            try:
                return evaluate(e, env)
            except ShapeError:
                return None

        results: list[Abstract | None] = []
        for i, stmt in enumerate(program.body):
            if last is not None and not (self.reads[i] & dirty):
                result = last[i]
            else:
                result = value(stmt.expr, self.reads[i])
            if last is None or result != last[i]:
                dirty.add(stmt.target)
            else:
                dirty.discard(stmt.target)
            env[stmt.target] = result
            results.append(result)
        outs = [value(e, r) for e, r in zip(program.returns, self.out_reads, strict=True)]
        if len(outs) != 1 + len(program.slots):
            raise SignatureError(
                f"return gives {len(outs)} values; expected {1 + len(program.slots)}")
        if lenient:
            self.last, self.last_shapes = results, dict(shapes)
        return env, outs


_MISSING = object()


def infer(program: Program) -> Typing:
    """Abstractly execute ``program``; see the module docstring for the checks."""
    slots = program.slots
    shapes: dict[str, Shape] = dict.fromkeys(slots, SCALAR)
    rounds = _Rounds(program)
    # Shapes flow from slot to slot, one link per round: a chain of n slots needs n + 1
    # rounds, and under broadcasting each of the 2n dimensions can grow at most once.
    # Provisional rounds are lenient (a slot still at its initial 1 x 1 guess may clash
    # where its settled shape does not); the round at the fixed point is strict.
    for _ in range(2 * len(slots) + 2):
        _, outs = rounds.run(shapes, lenient=True)
        new = {s: shapes[s] if out is None else out.shape
               for s, out in zip(slots, outs[1:], strict=True)}
        if new == shapes:
            break
        shapes = new
    else:
        raise ShapeError("state slot shapes do not settle: "
                         + ", ".join(f"{s}: {show(x)}" for s, x in shapes.items()))
    env, outs = rounds.run(shapes, lenient=False)
    for s, out, e in zip(slots, outs[1:], program.returns[1:], strict=True):
        if out.shape != shapes[s]:  # only when a lenient round could not tell
            raise ShapeError(f"state slot {s!r} is {show(shapes[s])} but its new value is "
                             f"{show(out.shape)}", e.line, e.col, s)
    update = outs[0]
    try:
        if broadcast(update.shape, FULL) != FULL:
            raise ShapeClash
    except ShapeClash:
        e = program.returns[0]
        raise ShapeError(f"the update has shape {show(update.shape)}, not that of the parameter",
                         e.line, e.col) from None
    slot_deps = {s: out.deps for s, out in zip(slots, outs[1:], strict=True)}
    deps = _closure(update.deps, slot_deps)
    return Typing(env, shapes, update, deps)


def _closure(deps: frozenset[str], slot_deps: dict[str, frozenset[str]]) -> frozenset[str]:
    """Inputs reached through state slots across steps."""
    seen = set(deps)
    todo = [d for d in deps if d in slot_deps]
    while todo:
        for d in slot_deps[todo.pop()]:
            if d not in seen:
                seen.add(d)
                if d in slot_deps:
                    todo.append(d)
    return frozenset(seen)


def check(program: Program) -> Typing:
    """Infer types and reject programs whose update ignores the gradient."""
    typing = infer(program)
    if "g" not in typing.update_deps:
        e = program.returns[0]
        raise GradientIndependenceError("the update does not depend on the gradient 'g'",
                                        e.line, e.col, "g")
    return typing
