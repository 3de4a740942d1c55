"""Mutations of update-rule programs (the search's variation operator).

Four mutations act on the IR (:mod:`optforge.lang.ir`):

* ``insert``: a new statement ``x = op(a, ...)`` at a random position, with a
  random op from the vocabulary and arguments drawn from the variables in scope
  there (inputs, slots, hyperparameters, earlier targets) or new constants. Its
  target is either an existing variable (a slot or an earlier target, which
  every later read then sees), a new temporary that replaces one later read (so
  the insertion reaches the update; preferably a read of one of its own
  arguments, i.e. the statement wraps that value), or, with probability
  ``new_slot``, a new state slot that reads its own previous value (with
  probability ``ema_slot`` as a moving average ``s = interp(s, x, c)`` of a
  variable ``x`` in scope, ``c`` from :data:`EMA_RATES`, the shape of every
  optimizer state in the literature), also wired into one later read.
* ``delete``: remove a statement; later reads of its target fall back to an
  earlier definition, or are bypassed to one of the statement's own arguments.
* ``argument``: replace one node of one expression (a call's argument, or a
  whole right-hand side / returned value) by a variable in scope or a new constant.
* ``constant``: multiply one constant or hyperparameter default by ``2^z``,
  ``z ~ N(0, 1)`` (rounded to four significant digits).

A child is kept only when it passes type and shape inference
(:func:`optforge.lang.infer.check`), has at most ``max_length`` ops and
``max_slots`` slots, its update depends on the ``require``d inputs (``lr`` by
default, so that the learning-rate grid and schedule act on every candidate:
otherwise ``update = w`` "solves" any task whose optimum is at the origin),
and its canonical hash differs from the parent's;
otherwise the mutator draws again (up to ``max_tries`` times). Constants are
always positive: negative numbers are written ``neg(c)``, as the parser does.
All randomness comes from one seeded :class:`random.Random`, and every choice
is made from an ordered list, so a seed fixes the children.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ..lang import ops
from ..lang.errors import ProgramError
from ..lang.infer import check
from ..lang.ir import INPUTS, Assign, Call, Const, Expr, Program, Var, walk

MUTATIONS = ("insert", "delete", "argument", "constant")
PALETTE = (0.5, 0.9, 0.99, 0.999, 1.0, 2.0, 0.1, 0.01, 1e-3, 1e-8)
"""Constants that new statements draw half of the time (the rest log-uniform in [1e-3, 10])."""
EMA_RATES = (0.1, 0.01, 0.001, 0.05, 0.5)
"""Rates ``1 - beta`` of the moving averages that new slots start as."""
READABLE_INPUTS = ("w", "g", "lr", "step")
"""Inputs a mutation may start reading (``h`` only if the parent already reads it:
the Hessian estimate costs a second backward pass)."""

Path = tuple[int, ...]
Site = tuple[str, int]  # ("body", i) or ("ret", j)


class MutationError(RuntimeError):
    """No valid child was found within ``max_tries`` draws."""


def default_ops() -> tuple[str, ...]:
    """The default op vocabulary: every registry op."""
    return tuple(ops.REGISTRY)


@dataclass(frozen=True)
class MutationConfig:
    """Knobs of :class:`Mutator` (see the module docstring)."""

    weights: dict[str, float] = field(
        default_factory=lambda: {"insert": 1.0, "delete": 1.0, "argument": 1.0, "constant": 1.0})
    max_length: int = 40
    max_slots: int = 4
    new_slot: float = 0.1
    ema_slot: float = 0.5
    new_constant: float = 0.2
    overwrite: float = 0.3
    ops: tuple[str, ...] = field(default_factory=default_ops)
    max_tries: int = 100
    require: tuple[str, ...] = ("lr",)

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(MUTATIONS)
        if unknown:
            raise ValueError(f"unknown mutation(s) {sorted(unknown)}; known: {list(MUTATIONS)}")
        if any(w < 0 or not math.isfinite(w) for w in self.weights.values()):
            raise ValueError(f"mutation weights must be finite and >= 0, got {self.weights}")
        if sum(self.weights.values()) <= 0:
            raise ValueError("at least one mutation weight must be positive")
        bad = [o for o in self.ops if o not in ops.REGISTRY]
        if bad:
            raise ValueError(f"unknown op(s) {bad} in the mutation vocabulary")
        if not self.ops:
            raise ValueError("the mutation op vocabulary is empty")
        for name in ("new_slot", "ema_slot", "new_constant", "overwrite"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        bad = [x for x in self.require if x not in INPUTS]
        if bad:
            raise ValueError(f"require names {bad}, which are not inputs {list(INPUTS)}")
        if self.max_length < 1 or self.max_slots < 0 or self.max_tries < 1:
            raise ValueError("max_length and max_tries must be >= 1, max_slots >= 0")


# ------------------------------------------------------------- tree helpers


def nodes(e: Expr, path: Path = ()) -> Iterator[tuple[Path, Expr]]:
    """Every node of an expression with its path (argument indices from the root)."""
    yield path, e
    if isinstance(e, Call):
        for i, a in enumerate(e.args):
            yield from nodes(a, (*path, i))


def replace(e: Expr, path: Path, new: Expr) -> Expr:
    """``e`` with the node at ``path`` replaced by ``new``."""
    if not path:
        return new
    assert isinstance(e, Call)
    i = path[0]
    args = list(e.args)
    args[i] = replace(args[i], path[1:], new)
    return Call(e.op, tuple(args))


def rename_reads(e: Expr, old: str, new: Expr) -> Expr:
    """``e`` with every read of ``old`` replaced by ``new``."""
    if isinstance(e, Var):
        return new if e.name == old else e
    if isinstance(e, Call):
        return Call(e.op, tuple(rename_reads(a, old, new) for a in e.args))
    return e


def length(program: Program) -> int:
    """Program length: the number of op calls in the body and the returned values."""
    exprs = [s.expr for s in program.body] + list(program.returns)
    return sum(1 for e in exprs for n in walk(e) if isinstance(n, Call))


def scope(program: Program, i: int) -> list[str]:
    """Names readable before statement ``i`` (``len(body)`` for the return), in a fixed order."""
    names = [p for p in program.params if p in INPUTS]
    names += [x for x in READABLE_INPUTS if x not in names]
    names += list(program.slots) + [k for k, _ in program.hyper]
    for s in program.body[:i]:
        if s.target not in names:
            names.append(s.target)
    return names


def _with_inputs(program: Program) -> Program:
    """Add to the signature every reserved input that the body or returns read."""
    read = set()
    for e in [s.expr for s in program.body] + list(program.returns):
        read |= {n.name for n in walk(e) if isinstance(n, Var)}
    missing = [x for x in INPUTS if x in read and x not in program.params]
    if not missing:
        return program
    return Program(program.name, tuple(missing) + program.params, program.hyper, program.body,
                   program.returns)


def _fresh(program: Program, prefix: str) -> str:
    taken = set(program.params) | {k for k, _ in program.hyper}
    taken |= {s.target for s in program.body} | set(ops.REGISTRY) | set(INPUTS)
    n = 1
    while f"{prefix}{n}" in taken:
        n += 1
    return f"{prefix}{n}"


def _round_sig(x: float, digits: int) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")


# ----------------------------------------------------------------- mutator


class Mutator:
    """Random valid children of a program (see the module docstring).

    ``rejected`` counts the draws thrown away (invalid, too long, or with the
    parent's hash) since construction.
    """

    def __init__(self, config: MutationConfig | None = None, rng: random.Random | None = None):
        self.config = config or MutationConfig()
        self.rng = rng or random.Random(0)
        self.rejected = 0
        self._kinds = [k for k in MUTATIONS if self.config.weights.get(k, 0) > 0]
        self._weights = [self.config.weights[k] for k in self._kinds]
        self._apply: dict[str, Callable[[Program], Program | None]] = {
            "insert": self.insert, "delete": self.delete,
            "argument": self.argument, "constant": self.constant,
        }

    # ---- the public entry point
    def mutate(self, parent: Program) -> tuple[Program, str]:
        """A valid child of ``parent`` with a different hash, and the mutation's name."""
        parent_hash = parent.hash
        for _ in range(self.config.max_tries):
            kind = self.rng.choices(self._kinds, self._weights)[0]
            child = self._apply[kind](parent)
            if child is not None and self.valid(child, parent_hash):
                return child, kind
            self.rejected += 1
        raise MutationError(f"no valid child of {parent.name!r} in {self.config.max_tries} draws")

    def valid(self, child: Program, parent_hash: str | None = None) -> bool:
        """Type-valid, within the limits, with an update that reads the ``require``d
        inputs (across steps), and (if ``parent_hash`` is given) a new hash."""
        if length(child) > self.config.max_length or len(child.slots) > self.config.max_slots:
            return False
        try:
            typing = check(child)
        except ProgramError:
            return False
        if any(x not in typing.update_deps for x in self.config.require):
            return False
        return parent_hash is None or child.hash != parent_hash

    # ---- random pieces
    def constant(self, program: Program) -> Program | None:
        """Multiply one constant or hyperparameter default by ``2^N(0, 1)``."""
        sites: list[tuple] = [("hyper", k) for k, v in program.hyper if v != 0]
        for site, e in self._exprs(program):
            sites += [(site, p) for p, n in nodes(e) if isinstance(n, Const) and n.value != 0]
        if not sites:
            return None
        where, what = self.rng.choice(sites)
        factor = 2.0 ** self.rng.gauss(0.0, 1.0)
        if where == "hyper":
            hyper = tuple((k, _round_sig(v * factor, 4) if k == what else v)
                          for k, v in program.hyper)
            return Program(program.name, program.params, hyper, program.body, program.returns)
        e = self._get(program, where)
        old = next(n for p, n in nodes(e) if p == what)
        return self._put(program, where, replace(e, what, Const(_round_sig(old.value * factor, 4))))

    def new_constant(self) -> Const:
        if self.rng.random() < 0.5:
            return Const(self.rng.choice(PALETTE))
        return Const(_round_sig(10.0 ** self.rng.uniform(-3.0, 1.0), 2))

    def leaf(self, names: Sequence[str]) -> Expr:
        """A variable from ``names`` or, with probability ``new_constant``, a new constant."""
        if self.rng.random() < self.config.new_constant:
            return self.new_constant()
        return Var(self.rng.choice(list(names)))

    def _readable(self, program: Program, i: int) -> list[str]:
        names = scope(program, i)
        return names + ["h"] if "h" in program.params and "h" not in names else names

    # ---- the four mutations (each returns an unchecked candidate or None)
    def insert(self, program: Program) -> Program | None:
        """Insert a random statement (see the module docstring)."""
        cfg, rng = self.config, self.rng
        if length(program) >= cfg.max_length:
            return None
        i = rng.randint(0, len(program.body))
        names = self._readable(program, i)
        op = ops.REGISTRY[rng.choice(list(cfg.ops))]
        args = [self.leaf(names) for _ in range(op.arity)]
        body = list(program.body)
        params, returns = program.params, program.returns
        if rng.random() < cfg.new_slot and len(program.slots) < cfg.max_slots:
            target = _fresh(program, "s")
            params, returns = (*params, target), (*returns, Var(target))
            if "interp" in cfg.ops and rng.random() < cfg.ema_slot:  # a moving average
                op = ops.REGISTRY["interp"]
                args = [Var(target), Var(rng.choice(names)), Const(rng.choice(EMA_RATES))]
            else:
                args[rng.randrange(op.arity)] = Var(target)  # a slot carries its own past
            body.insert(i, Assign(target, Call(op.name, tuple(args))))
            wire = True
        else:
            assignable = [n for n in names if n in program.slots
                          or n in {s.target for s in program.body[:i]}]
            if assignable and rng.random() < cfg.overwrite:
                target, wire = rng.choice(assignable), False
            else:
                target, wire = _fresh(program, "t"), True
            body.insert(i, Assign(target, Call(op.name, tuple(args))))
        child = Program(program.name, params, program.hyper, tuple(body), returns)
        if wire:
            own = {a.name for a in args if isinstance(a, Var)}
            child = self._rewire(child, i, target, own)
            if child is None:
                return None
        return _with_inputs(child)

    def _rewire(self, program: Program, i: int, target: str, own: set[str]) -> Program | None:
        """Replace one read after statement ``i`` with a read of the new ``target``.

        With probability 1/2 the read is of one of the new statement's own
        arguments (the statement then wraps that value), when there is one.
        """
        reads: list[tuple[Site, Path, str]] = []
        for site, e in self._exprs(program):
            if site[0] == "body" and site[1] <= i:
                continue
            reads += [(site, p, n.name) for p, n in nodes(e)
                      if isinstance(n, Var) and n.name != target]
        if not reads:
            return None
        wrapped = [r for r in reads if r[2] in own]
        site, path, _ = self.rng.choice(wrapped if wrapped and self.rng.random() < 0.5 else reads)
        e = self._get(program, site)
        return self._put(program, site, replace(e, path, Var(target)))

    def delete(self, program: Program) -> Program | None:
        """Delete a random statement, bypassing later reads of its target if needed."""
        if not program.body:
            return None
        i = self.rng.randrange(len(program.body))
        stmt = program.body[i]
        body = list(program.body[:i]) + list(program.body[i + 1:])
        child = Program(program.name, program.params, program.hyper, tuple(body), program.returns)
        if stmt.target in scope(child, i):
            return child  # later reads see the earlier definition
        own = [n.name for n in walk(stmt.expr) if isinstance(n, Var)]
        names = own or scope(child, i)
        substitute = Var(self.rng.choice(sorted(set(names), key=names.index)))
        returns = program.returns
        for j in range(i, len(body)):  # reads up to (and in) the next definition
            s = body[j]
            body[j] = Assign(s.target, rename_reads(s.expr, stmt.target, substitute))
            if s.target == stmt.target:
                break
        else:
            returns = tuple(rename_reads(e, stmt.target, substitute) for e in returns)
        return Program(program.name, program.params, program.hyper, tuple(body), returns)

    def argument(self, program: Program) -> Program | None:
        """Replace one node of one expression by a variable in scope or a new constant."""
        sites = [(site, p) for site, e in self._exprs(program) for p, _ in nodes(e)]
        site, path = self.rng.choice(sites)
        i = site[1] if site[0] == "body" else len(program.body)
        new = self.leaf(self._readable(program, i))
        e = self._get(program, site)
        return _with_inputs(self._put(program, site, replace(e, path, new)))

    # ---- sites
    @staticmethod
    def _exprs(program: Program) -> list[tuple[Site, Expr]]:
        return ([(("body", i), s.expr) for i, s in enumerate(program.body)]
                + [(("ret", j), e) for j, e in enumerate(program.returns)])

    @staticmethod
    def _get(program: Program, site: Site) -> Expr:
        kind, i = site
        return program.body[i].expr if kind == "body" else program.returns[i]

    @staticmethod
    def _put(program: Program, site: Site, e: Expr) -> Program:
        kind, i = site
        body, returns = list(program.body), list(program.returns)
        if kind == "body":
            body[i] = Assign(body[i].target, e)
        else:
            returns[i] = e
        return Program(program.name, program.params, program.hyper, tuple(body), tuple(returns))
