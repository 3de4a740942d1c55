"""Dead-code elimination and the canonical structural hash.

A state slot is live when the update reads it, directly or through other
live slots across steps; a statement is live when a live output reads it.
The structural hash is computed on the dataflow graph of the live program:
inputs are named by role (``w``, ``g``, slot number, hyperparameter value;
slots, and hyperparameters of equal value, by signature order), so it is
invariant to variable names, dead code and the operand order of commutative
ops, and changes when any constant or live statement changes. It is not
invariant to reordering the slots in the signature.
"""

from __future__ import annotations

import hashlib

from . import ops
from .ir import Call, Const, Expr, Program, Var, names_read


def _digest(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def live_slots(program: Program) -> set[str]:
    """Slots whose value reaches the update across steps."""
    slots = program.slots
    ret = dict(zip(slots, program.returns[1:], strict=True))
    reads = _reads_through_body(program)
    live: set[str] = set()
    todo = reads(program.returns[0]) & set(slots)
    while todo:
        s = todo.pop()
        if s not in live:
            live.add(s)
            todo |= reads(ret[s]) & set(slots)
    return live


def _reads_through_body(program: Program):
    """A function: expression -> the signature names it depends on through the body."""
    defs: dict[str, set[str]] = {}
    signature = set(program.params) | {k for k, _ in program.hyper}
    for stmt in program.body:
        deps: set[str] = set()
        for n in names_read(stmt.expr):
            deps |= defs.get(n, {n} if n in signature else set())
        defs[stmt.target] = deps

    def reads(e: Expr) -> set[str]:
        out: set[str] = set()
        for n in names_read(e):
            out |= defs.get(n, {n} if n in signature else set())
        return out

    return reads


def live_inputs(program: Program) -> set[str]:
    """Reserved inputs, slots and hyperparameters that the update depends on."""
    reads = _reads_through_body(program)
    live = live_slots(program)
    slots = program.slots
    out = reads(program.returns[0])
    for s, e in zip(slots, program.returns[1:], strict=True):
        if s in live:
            out |= reads(e)
    return out


def eliminate_dead_code(program: Program) -> Program:
    """Drop dead slots, dead statements and unused hyperparameters."""
    live = live_slots(program)
    keep_params = tuple(p for p in program.params if p not in program.slots or p in live)
    returns = (program.returns[0],) + tuple(
        e for s, e in zip(program.slots, program.returns[1:], strict=True) if s in live
    )
    needed: set[str] = set()
    for e in returns:
        needed |= names_read(e)
    body = []
    for stmt in reversed(program.body):
        if stmt.target in needed:
            needed.discard(stmt.target)
            needed |= names_read(stmt.expr)
            body.append(stmt)
    body.reverse()
    hyper = tuple((k, v) for k, v in program.hyper if k in needed)
    keep_params = tuple(p for p in keep_params if p in needed or p in live or p == "g")
    return Program(program.name, keep_params, hyper, tuple(body), returns, program.doc)


def structural_hash(program: Program) -> str:
    """Canonical hash of the live dataflow graph (see module docstring)."""
    p = eliminate_dead_code(program)
    env: dict[str, str] = {}
    for name in p.inputs:
        env[name] = _digest("in", name)
    for i, s in enumerate(p.slots):
        env[s] = _digest("slot", str(i))
    seen: dict[str, int] = {}
    for k, v in p.hyper:
        # by value, and among live hyperparameters of equal value by signature order, so
        # that two tunable knobs never hash like one knob used twice
        n = seen[_number(v)] = seen.get(_number(v), -1) + 1
        env[k] = _digest("hyper", _number(v), str(n))
    for stmt in p.body:
        env[stmt.target] = expr_hash(stmt.expr, env)
    return _digest("program", *(expr_hash(e, env) for e in p.returns))


def _number(value: float) -> str:
    """Exact text of a constant; -0.0 is 0.0 (they print alike, so the hash survives
    a print/parse round trip)."""
    return repr(float(value) + 0.0)


def expr_hash(e: Expr, env: dict[str, str]) -> str:
    if isinstance(e, Var):
        return env[e.name]
    if isinstance(e, Const):
        return _digest("const", _number(e.value))
    assert isinstance(e, Call)
    args = [expr_hash(a, env) for a in e.args]
    if ops.REGISTRY[e.op].commutative:
        args.sort()
    return _digest("op", e.op, *args)


def state_hash(program: Program) -> str:
    """Identity of a program's optimizer state: its structure and slot names, whatever its
    hyperparameter defaults (one program's state dicts are interchangeable across them).
    State dicts carry it, so that the state of another program is refused on load."""
    neutral = program.with_hyper(**{k: float(i) for i, (k, _) in enumerate(program.hyper)})
    return _digest("state", structural_hash(neutral), *program.slots)
