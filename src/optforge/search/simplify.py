"""Simplification of winners: shorter programs that keep their fitness.

1. Dead-code removal (:func:`optforge.lang.canon.eliminate_dead_code`),
   which never changes behaviour.
2. Greedy removal, repeated until nothing more goes: drop a statement (last
   first; later reads of its target fall back to an earlier definition or are
   bypassed to one of its arguments), then, if ``prune_nodes``, replace one
   call by one of its arguments (``sqrt(v) + eps`` -> ``sqrt(v)``). An edit
   is kept when the program still type-checks and its fitness is at least
   ``reference - tolerance`` (``reference``: the fitness of the unedited
   program, so edits cannot drift down step by step).
3. Constant rounding: each constant and hyperparameter default is rounded to
   1, then 2, then 3 significant digits (``0.8993 -> 0.9``); the first
   rounding that keeps fitness within the tolerance stays.

Every distinct program (by canonical hash) is evaluated once; at most
``max_evaluations`` evaluations are spent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..lang.canon import eliminate_dead_code
from ..lang.errors import ProgramError
from ..lang.infer import check
from ..lang.ir import Assign, Call, Const, Program, Var, expr_source, walk
from .mutate import nodes, rename_reads, replace, scope


@dataclass
class Simplification:
    original: Program
    program: Program
    reference: float
    fitness: float
    edits: list[str] = field(default_factory=list)
    evaluations: int = 0


def round_sig(x: float, digits: int) -> float:
    """``x`` rounded to ``digits`` significant digits."""
    if x == 0 or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")


def _with(program: Program, body=None, returns=None, hyper=None) -> Program:
    return Program(program.name, program.params, program.hyper if hyper is None else hyper,
                   program.body if body is None else tuple(body),
                   program.returns if returns is None else tuple(returns), program.doc)


def removals(program: Program) -> Iterator[tuple[Program, str]]:
    """Programs with one statement removed (last first), each way of bypassing it."""
    for i in reversed(range(len(program.body))):
        stmt = program.body[i]
        rest = list(program.body[:i]) + list(program.body[i + 1:])
        if stmt.target in scope(_with(program, body=rest), i):
            yield _with(program, body=rest), f"removed statement {i + 1} ({stmt.target} = ...)"
            continue
        args = [n.name for n in walk(stmt.expr) if isinstance(n, Var)]
        for name in dict.fromkeys(args):
            body, returns = list(rest), list(program.returns)
            for j in range(i, len(body)):
                s = body[j]
                body[j] = Assign(s.target, rename_reads(s.expr, stmt.target, Var(name)))
                if s.target == stmt.target:
                    break
            else:
                returns = [rename_reads(e, stmt.target, Var(name)) for e in returns]
            yield (_with(program, body=body, returns=returns),
                   f"removed statement {i + 1} ({stmt.target} = ..., reads now see {name})")


def prunings(program: Program) -> Iterator[tuple[Program, str]]:
    """Programs with one call replaced by one of its arguments."""
    sites = [("body", i, s.expr) for i, s in enumerate(program.body)]
    sites += [("ret", j, e) for j, e in enumerate(program.returns)]
    for kind, i, e in sites:
        for path, node in nodes(e):
            if not isinstance(node, Call):
                continue
            for a in node.args:
                new = replace(e, path, a)
                body, returns = list(program.body), list(program.returns)
                if kind == "body":
                    body[i] = Assign(body[i].target, new)
                else:
                    returns[i] = new
                yield (_with(program, body=body, returns=returns),
                       f"{expr_source(node)} -> {expr_source(a)}")


def constant_sites(program: Program) -> list[tuple]:
    """Where the constants are: ``("hyper", name)`` or ``(kind, index, path)``."""
    out: list[tuple] = [("hyper", k) for k, _ in program.hyper]
    exprs = [("body", i, st.expr) for i, st in enumerate(program.body)]
    exprs += [("ret", j, e) for j, e in enumerate(program.returns)]
    for kind, i, e in exprs:
        out += [(kind, i, path) for path, n in nodes(e) if isinstance(n, Const)]
    return out


def constant_at(program: Program, site: tuple) -> float:
    if site[0] == "hyper":
        return program.hyperparameters[site[1]]
    kind, i, path = site
    e = program.body[i].expr if kind == "body" else program.returns[i]
    return next(n for p, n in nodes(e) if p == path).value


def with_constant(program: Program, site: tuple, value: float) -> Program:
    """``program`` with the constant at ``site`` set to ``value``."""
    if site[0] == "hyper":
        return _with(program, hyper=tuple((k, value if k == site[1] else v)
                                          for k, v in program.hyper))
    kind, i, path = site
    body, returns = list(program.body), list(program.returns)
    if kind == "body":
        body[i] = Assign(body[i].target, replace(body[i].expr, path, Const(value)))
    else:
        returns[i] = replace(returns[i], path, Const(value))
    return _with(program, body=body, returns=returns)


def roundings(value: float) -> list[float]:
    """``value`` rounded to 1, 2, 3 significant digits, shortest first, up to the first exact."""
    out = []
    for d in (1, 2, 3):
        r = round_sig(value, d)
        if r == value:
            break
        if r != 0 and r not in out:
            out.append(r)
    return out


def simplify(program: Program, fitness: Callable[[Program], float], tolerance: float = 0.02,
             reference: float | None = None, prune_nodes: bool = True,
             max_evaluations: int = 200,
             valid: Callable[[Program], bool] | None = None) -> Simplification:
    """Simplify ``program`` (see the module docstring); ``fitness`` is higher-is-better.

    ``valid`` (optional) is a further condition every edit must meet (the
    search passes its mutation constraints, e.g. that the update reads ``lr``).
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    cache: dict[str, float] = {}
    spent = [0]

    def score(p: Program) -> float | None:
        h = p.hash
        if h not in cache:
            if spent[0] >= max_evaluations:
                return None
            spent[0] += 1
            cache[h] = float(fitness(p))
        return cache[h]

    current = eliminate_dead_code(program)
    edits = []
    if (len(current.body), len(current.slots), len(current.hyper)) != (
            len(program.body), len(program.slots), len(program.hyper)):
        edits.append("removed dead code")
    ref = score(current) if reference is None else reference
    cache.setdefault(current.hash, ref)
    floor = ref - tolerance

    def acceptable(p: Program) -> bool:
        try:
            check(p)
        except ProgramError:
            return False
        if valid is not None and not valid(p):
            return False
        if p.hash == current.hash:
            return False
        f = score(p)
        return f is not None and f >= floor

    changed = True
    while changed and spent[0] < max_evaluations:
        changed = False
        variants = list(removals(current))
        if prune_nodes:
            variants += list(prunings(current))
        for variant, what in variants:
            variant = eliminate_dead_code(variant)
            if acceptable(variant):
                current, changed = variant, True
                edits.append(what)
                break
    for site in constant_sites(current):
        value = constant_at(current, site)
        for r in roundings(value):
            variant = with_constant(current, site, r)
            if acceptable(variant):
                current = variant
                name = site[1] if site[0] == "hyper" else "constant"
                edits.append(f"{name}: {value:g} -> {r:g}")
                break
    return Simplification(program, current, ref, cache[current.hash], edits, spent[0])


# ------------------------------------------------------------------ formulas


def formula(program: Program) -> tuple[str, str]:
    """The live program's step as sympy-simplified formulas: ``(text, latex)``."""
    from ..lang import symbolic

    live = eliminate_dead_code(program)
    return symbolic.formula(live), symbolic.latex(live)
