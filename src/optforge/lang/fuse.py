"""Tracing: a plan, run once on symbolic values, becomes a list of fused kernel calls.

A list-valued expression stays *lazy* during tracing, as a linear combination

    c0 + sum_i c_i * t_i,   t_i in {X, A * B, A / B}

of materialised lists ``X, A, B`` with uniform coefficients ``c_i`` (Python
floats at run time, or per-replica ``(K, 1, 1)`` tensors). It is materialised
only when an op needs its values (``sqrt``, a reduction, an output), with
torch's fused multi-tensor kernels (``lerp_``, ``addcmul_``, ``addcdiv_``,
``add_(alpha=)``, ``mul_``) and in place in one of its own operands when the
step owns that operand (a temporary, or a state slot whose old value is no
longer read) and no live value still reads it. So ``m = interp(m, g, 1 - b1)``
is one ``lerp_`` on the stored moment, ``v = interp(v, g * g, 1 - b2)`` is
``mul_`` + ``addcmul_``, and AdamW's ``w <- w - lr * (m_hat / (sqrt(v_hat) +
eps) + wd * w)`` is ``w.mul_(1 - lr wd)`` and one ``addcdiv_``: the kernels
``torch.optim.AdamW(foreach=True)`` runs. Uniform sub-expressions are folded
when constant and otherwise computed once per step as floats.

The rewrites are exact up to rounding: ``c (a + b) = c a + c b``, ``x / s =
x (1 / s)``, ``interp(a, b, t) = (1 - t) a + t b``, ``w - (c w + r) = (1 - c) w
- r``, on finite values. IEEE arithmetic does not distribute over infinities
(for ``u = inf``, ``u + 0 (w - u)`` is NaN, its rewrite ``(1 - 0) u + 0 w`` is
inf), so where an intermediate is infinite both are non-finite, not always
the same non-finite value.

Liveness decides what may be overwritten: a buffer is written in place only
if the step owns it and no live register, pending output or operand in use
reads it (``plan.last_use``). The outputs are settled last (see :class:`_Outputs`).

The calls are recorded as data, :class:`~optforge.lang.kernels.Kernel` records
(call, operands, destination, program statement): the eager step binds them to
torch closures (:func:`~optforge.lang.kernels.bind`) and ``optforge export``
prints them as the exported file's source (:mod:`optforge.export.lower`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from . import ops
from .kernels import (
    LIKE_REG,
    N_EXTRA,
    N_REG,
    NOT_KERNELS,
    W_REG,
    Kernel,
    Scalar,
    Tensors,
    bind,
)
from .shapes import FULL, SCALAR, Shape, broadcast

if TYPE_CHECKING:
    from .runtime import Plan

MAX_TERMS = 4  # a lazy combination with more terms is materialised

# unary ops whose torch function has multi-tensor kernels of the same name:
# (out of place, in place) kernel names, None where torch lacks one
_FOREACH_UNARY = {
    name: tuple(k if hasattr(torch, f"_foreach_{k}") else None for k in (name, name + "_"))
    for name in ("neg", "sign", "abs", "sqrt", "rsqrt", "reciprocal", "exp", "log", "log1p",
                 "expm1", "tanh", "sigmoid", "sin", "cos", "atan", "erf")
}


def trace(plan: Plan, kinds: dict[int, str], apply: bool) -> Trace:
    """Trace ``plan`` for inputs of ``kinds`` (register -> ``'L'`` list, ``'f'``
    float, ``'t'`` per-replica tensor); see :meth:`optforge.lang.runtime.Plan.trace`."""
    return _Tracer(plan, kinds, apply).build()


@dataclass
class Trace:
    """Kernel calls recorded by tracing (``kernels``, the plan as data; see
    :mod:`optforge.lang.kernels`), replayed by :meth:`run` through their torch binding.

    ``n_regs`` registers; the caller fills the plan's input, slot and
    hyperparameter registers and, past them, ``N`` (number of tensors),
    ``LIKE`` (a tensor giving the dtype and device of per-replica scalars) and
    ``W`` (the parameters, for a trace that applies the update). Lists may come
    back as tuples (what ``torch._foreach_*`` returns). ``update`` is the
    register of the update (``None`` when applied in place); ``slots[i]`` says
    where slot ``i``'s new value is: ``None`` when it was written into the
    slot's own tensors, else the register of a list (or scalar) to store.
    """

    n_regs: int
    kernels: list[Kernel]
    update: int | None
    slots: list[int | None]
    base: int  # the plan's register count: N, LIKE and W follow it
    named: dict[int, int] = field(default_factory=dict)  # register -> statement it holds

    def __post_init__(self):
        self.steps = [bind(k, self.base) for k in self.kernels]

    @property
    def n_kernels(self) -> int:
        """Passes over the tensors (multi-tensor or per-tensor calls) per step."""
        return sum(k.call not in NOT_KERNELS for k in self.kernels)

    def run(self, regs: list) -> None:
        for step in self.steps:
            step(regs)




@dataclass(frozen=True, eq=False)
class _T:
    """A term ``coef * a`` (``x``), ``coef * a * b`` (``mul``) or ``coef * a / b`` (``div``)."""

    coef: Scalar
    kind: str
    a: Tensors
    b: Tensors | None = None

    @property
    def shape(self) -> Shape:
        return self.a.shape if self.b is None else broadcast(self.a.shape, self.b.shape)

    @property
    def bufs(self) -> set[int]:
        return {self.a.buf} if self.b is None else {self.a.buf, self.b.buf}

    def operands(self) -> tuple:
        return (self.a,) if self.b is None else (self.a, self.b)


@dataclass(frozen=True, eq=False)
class _Lin:
    """A lazy list value ``c0 + sum(terms)``; ``lerp`` is ``(a, b, t)`` when it is
    exactly ``interp(a, b, t)`` of two lists."""

    terms: tuple[_T, ...]
    c0: Scalar | None
    shape: Shape
    lerp: tuple[Tensors, Tensors, Scalar] | None = None


ONE = Scalar(None, 1.0)
MINUS_ONE = Scalar(None, -1.0)


def _refs(v) -> set[int]:
    if isinstance(v, Tensors):
        return {v.buf}
    if isinstance(v, _Lin):
        return set().union(*(t.bufs for t in v.terms))
    return set()


def _is_one(s: Scalar | None) -> bool:
    return s is not None and s.const == 1.0


def _same_operands(u: _T, t: _T) -> bool:
    if u.kind != t.kind:
        return False
    if u.b is None:
        return u.a.reg == t.a.reg
    if u.a.reg == t.a.reg and u.b.reg == t.b.reg:
        return True
    return u.kind == "mul" and u.a.reg == t.b.reg and u.b.reg == t.a.reg


class _Tracer:
    """Symbolic execution of a plan, recording kernel calls (see module docstring)."""

    def __init__(self, plan: Plan, kinds: dict[int, str], apply: bool):
        self.plan = plan
        self.apply = apply
        self.n = plan.n_regs + N_EXTRA
        self.N = plan.n_regs + N_REG
        self.LIKE = plan.n_regs + LIKE_REG
        self.kernels: list[Kernel] = []
        self.stmt = 0  # the program statement being traced
        self.named: dict[int, int] = {}  # register -> the statement whose variable it holds
        self.owned: set[int] = set()  # buffers this step may overwrite once nothing reads them
        self.env: dict[int, object] = {}
        self.hold: list = []  # values in use besides the live registers
        self.at = 0
        for r in range(plan.n_regs):
            kind = kinds.get(r)
            if r in plan.consts:
                self.env[r] = Scalar(None, plan.consts[r])
            elif kind == "L":
                self.env[r] = Tensors(r, r, plan.shape[r])
            elif kind in ("f", "t"):
                self.env[r] = Scalar(r, None, kind == "t")
        self.owned.update(r for r in plan.slot_regs if kinds.get(r) == "L")
        needed = (*plan.input_regs.values(), *plan.slot_regs, *plan.hyper_regs.values())
        missing = [r for r in needed if r not in self.env]
        if missing:
            raise ValueError(f"no kind given for registers {missing}")
        r_w = plan.input_regs.get("w")
        if r_w is not None and kinds.get(r_w) != "L":
            raise ValueError("the parameters 'w' must be a list")
        self.w = Tensors(r_w, r_w, FULL) if r_w is not None else Tensors(self.W, self.W, FULL)

    @property
    def W(self) -> int:
        return self.plan.n_regs + W_REG

    # ------------------------------------------------------------ emission
    def _reg(self) -> int:
        self.n += 1
        return self.n - 1

    def emit(self, call: str, *args, dest: int | None = None, op: str | None = None) -> None:
        """Record ``R[dest] = call(*args)`` (args: traced values; see :class:`Kernel`)."""
        self.kernels.append(Kernel(call, args, dest, self.stmt, op))

    def fresh(self, call: str, *args, shape: Shape) -> Tensors:
        """A list in a new buffer, ``call(*args)``."""
        r = self._reg()
        self.emit(call, *args, dest=r)
        self.owned.add(r)
        return Tensors(r, r, shape)

    # ------------------------------------------------------------ scalars
    def sop(self, op: ops.Op, *args: Scalar) -> Scalar:
        """A uniform op, folded now when every operand is a constant."""
        if all(a.const is not None for a in args) and op.scalar is not None:
            return Scalar(None, float(op.scalar(*(a.const for a in args))))
        r = self._reg()
        tensor = any(a.tensor for a in args) or op.scalar is None
        self.emit("scalar" if not tensor else "uniform", *args, dest=r, op=op.name)
        if not tensor:
            return Scalar(r)
        return Scalar(r, None, True)

    def smul(self, a: Scalar, b: Scalar) -> Scalar:
        if _is_one(a):
            return b
        if _is_one(b):
            return a
        return self.sop(ops.REGISTRY["mul"], a, b)

    def sadd(self, a: Scalar | None, b: Scalar | None) -> Scalar | None:
        if a is None or b is None:
            return b if a is None else a
        return self.sop(ops.REGISTRY["add"], a, b)

    # ------------------------------------------------------------ liveness
    def writable(self, x: Tensors, user=None) -> bool:
        """May the step overwrite ``x``'s buffer? Only if it owns it and no value
        reads it but ``user`` (the value being computed from it, skipped once)."""
        if x.view or x.buf not in self.owned:
            return False
        skipped = user is None
        for v in self.hold:
            if v is user and not skipped:
                skipped = True
            elif x.buf in _refs(v):
                return False
        last_use = self.plan.last_use
        return not any(last_use.get(r, -1) > self.at and x.buf in _refs(v)
                       for r, v in self.env.items())

    # ------------------------------------------------------------ lazy algebra
    @staticmethod
    def lin(v) -> _Lin:
        if isinstance(v, _Lin):
            return v
        return _Lin((_T(ONE, "x", v),), None, v.shape)

    @staticmethod
    def make(terms, c0, shape, lerp=None):
        """A lazy value, or the list itself when it is just ``1 * X``."""
        if len(terms) == 1 and c0 is None and lerp is None:
            (t,) = terms
            if t.kind == "x" and _is_one(t.coef):
                return t.a
        return _Lin(tuple(terms), c0, shape, lerp)

    def scale(self, v, s: Scalar):
        if isinstance(v, Scalar):
            return self.smul(v, s)
        if _is_one(s):
            return v
        v = self.lin(v)
        terms = [_T(self.smul(t.coef, s), t.kind, t.a, t.b) for t in v.terms]
        c0 = None if v.c0 is None else self.smul(v.c0, s)
        return self.make(terms, c0, v.shape)

    def combine(self, a, b):
        """``a + b`` of lazy values, merging like terms; no size limit."""
        if isinstance(a, Scalar):
            a, b = b, a
        la = self.lin(a)
        if isinstance(b, Scalar):
            return self.make(la.terms, self.sadd(la.c0, b), la.shape)
        lb = self.lin(b)
        terms = list(la.terms)
        for t in lb.terms:
            for i, u in enumerate(terms):
                if _same_operands(u, t):
                    terms[i] = _T(self.sadd(u.coef, t.coef), u.kind, u.a, u.b)
                    break
            else:
                terms.append(t)
        return self.make(terms, self.sadd(la.c0, lb.c0), broadcast(la.shape, lb.shape))

    def add(self, a, b):
        if isinstance(a, Scalar) and isinstance(b, Scalar):
            return self.sadd(a, b)
        out = self.combine(a, b)
        if isinstance(out, _Lin) and len(out.terms) > MAX_TERMS:
            self.hold.append(out)
            out = self.materialize(out)
            self.hold.pop()
        return out

    @staticmethod
    def single(v) -> tuple[Scalar, Tensors] | None:
        """``(c, X)`` when ``v`` is ``c * X``."""
        if isinstance(v, Tensors):
            return ONE, v
        if isinstance(v, _Lin) and len(v.terms) == 1 and v.c0 is None:
            (t,) = v.terms
            if t.kind == "x":
                return t.coef, t.a
        return None

    def product(self, kind: str, a, b, shape: Shape):
        """``a * b`` or ``a / b`` of two list values, as one lazy term."""
        sa = self.single(a) or (ONE, self.materialize(a))
        if b is a:  # square(x): one operand, materialised once
            sb = sa
        else:
            sb = (self.single(b) if kind == "mul" else None) or (ONE, self.materialize(b))
        return self.make([_T(self.smul(sa[0], sb[0]), kind, sa[1], sb[1])], None, shape)

    # ------------------------------------------------------------ materialisation
    def materialize(self, v, into: Tensors | None = None) -> Tensors:
        """A list equal to ``v``: in one of its own dying operands when possible,
        else in a new buffer; ``into`` forces the target (the parameters)."""
        if isinstance(v, Scalar):
            return self.expand(v) if into is None else self._fill(into, v)
        if isinstance(v, Tensors):
            if into is not None and v.reg != into.reg:
                self.emit("copy_", into, v)
                return into
            return v
        if v.lerp is not None and into is None:
            a, b, t = v.lerp
            if a.shape == v.shape and self.writable(a, v):
                self.emit("lerp_", a, b, t)
                return a
            return self.fresh("lerp", a, b, t, shape=v.shape)
        terms = list(v.terms)
        target = into
        if target is None:
            for t in terms:
                if (t.a.shape == v.shape and self.writable(t.a, v)
                        and not any(t.a.buf in u.bufs for u in terms if u is not t)):
                    target = t.a
                    break
        if target is not None:
            first = next((t for t in terms if t.a.reg == target.reg), None)
            rest = [t for t in terms if t is not first]
            # Terms that read the target must see its old value. One of them
            # may run first when the target keeps coefficient 1 (each element
            # is read, then written, by the same kernel); the others are
            # computed aside beforehand.
            if first is not None and first.kind == "x" and _is_one(first.coef):
                direct = next((t for t in rest if target.buf in t.bufs and not t.coef.tensor
                               and all(x.reg == target.reg for x in t.operands()
                                       if x.buf == target.buf)), None)
                if direct is not None:
                    rest.remove(direct)
                    rest.insert(0, direct)
            else:
                direct = None
            for k, t in enumerate(rest):
                if t is not direct and target.buf in t.bufs:
                    self.hold.append(v)
                    rest[k] = _T(ONE, "x", self.materialize(self.make([t], None, t.shape)))
                    self.hold.pop()
            if first is None:
                self.emit("zero_", target)
            else:
                self._first_in_place(target, first)
            for t in rest:
                self._accumulate(target, t)
            if v.c0 is not None:
                self.emit("add_", target, v.c0)
            return target
        # a new buffer: the first term (or two, fused) out of place, the rest in place
        terms.sort(key=lambda t: (t.shape != v.shape, not (t.kind == "x" and _is_one(t.coef))))
        first, rest = terms[0], terms[1:]
        if (first.kind == "x" and _is_one(first.coef) and first.shape == v.shape and rest
                and not rest[0].coef.tensor):
            second, rest = rest[0], rest[1:]
            out = self.fresh(_OUT_OF_PLACE[second.kind], first.a, *second.operands(),
                             second.coef, shape=v.shape)
        else:
            out = self._term_out_of_place(first)
        for t in rest:
            out = self._accumulate(out, t)
        if v.c0 is not None:
            self.emit("add_", out, v.c0)
        return out

    def _term_out_of_place(self, t: _T) -> Tensors:
        if t.kind == "x":
            return self.fresh("mul", t.a, t.coef, shape=t.shape)
        fn = "mul" if t.kind == "mul" else "div"
        out = self.fresh(fn, t.a, t.b, shape=t.shape)
        if not _is_one(t.coef):
            self.emit("mul_", out, t.coef)
        return out

    def _first_in_place(self, target: Tensors, t: _T) -> None:
        if t.kind == "mul":
            self.emit("mul_", target, t.b)
        elif t.kind == "div":
            self.emit("div_", target, t.b)
        if not _is_one(t.coef):
            self.emit("mul_", target, t.coef)

    def _accumulate(self, out: Tensors, t: _T) -> Tensors:
        """``out + t``: in place unless broadcasting grows ``out``."""
        shape = broadcast(out.shape, t.shape)
        if shape != out.shape:
            term = self._term_out_of_place(t)
            return self.fresh("add", out, term, shape=shape)
        if t.coef.tensor:  # no fused kernel takes a per-replica alpha: out += (a op b) * c
            x = t.a if t.kind == "x" else self.fresh(
                "mul" if t.kind == "mul" else "div", t.a, t.b,
                shape=t.shape)
            self.emit("addcmul_", out, x, t.coef)
        else:
            self.emit(_IN_PLACE[t.kind], out, *t.operands(), t.coef)
        return out

    def _fill(self, into: Tensors, s: Scalar) -> Tensors:
        self.emit("zero_", into)
        self.emit("add_", into, s)
        return into

    def expand(self, s: Scalar) -> Tensors:
        """A uniform scalar as a list (one shared tensor; never written)."""
        r = self._reg()
        self.emit("expand", s, dest=r)
        return Tensors(r, r, SCALAR, view=True)

    # ------------------------------------------------------------ ops
    def op(self, op: ops.Op, a: list, shape: Shape):
        """The traced value of ``op(*a)``."""
        name = op.name
        if op.family == "global":
            if isinstance(a[0], Scalar):
                return self.sop(op, a[0])
            r = self._reg()
            self.emit("global", self.materialize(a[0]), dest=r, op=op.name)
            return Scalar(r, None, True)
        if all(isinstance(x, Scalar) for x in a):
            return self.sop(op, *a)
        if op.family != "elementwise":
            return self.generic(op, a, shape)
        if name == "add":
            return self.add(a[0], a[1])
        if name == "sub":
            return self.add(a[0], self.scale(a[1], MINUS_ONE))
        if name == "neg":
            return self.scale(a[0], MINUS_ONE)
        if name == "mul":
            if isinstance(a[0], Scalar) or isinstance(a[1], Scalar):
                s, x = (a[0], a[1]) if isinstance(a[0], Scalar) else (a[1], a[0])
                return self.scale(x, s)
            return self.product("mul", a[0], a[1], shape)
        if name == "square":
            return self.product("mul", a[0], a[0], shape)
        if name == "div":
            if isinstance(a[1], Scalar):
                return self.scale(a[0], self.sop(ops.REGISTRY["reciprocal"], a[1]))
            if isinstance(a[0], Scalar):
                return self.scale(self.unary(ops.REGISTRY["reciprocal"], a[1], shape), a[0])
            return self.product("div", a[0], a[1], shape)
        if name == "interp" and isinstance(a[2], Scalar):
            x, y, t = a
            one_minus_t = self.sop(ops.REGISTRY["sub"], ONE, t)
            if isinstance(x, Tensors) and isinstance(y, Tensors):
                terms = (_T(one_minus_t, "x", x), _T(t, "x", y))
                if x.reg != y.reg:
                    return _Lin(terms, None, shape, (x, y, t))
            return self.add(self.scale(x, one_minus_t), self.scale(y, t))
        if op.arity == 1 and name in _FOREACH_UNARY:
            return self.unary(op, a[0], shape)
        if name in ("maximum", "minimum", "pow", "clip"):
            return self.binary(op, a, shape)
        return self.generic(op, a, shape)

    def unary(self, op: ops.Op, arg, shape: Shape) -> Tensors:
        out_fn, in_fn = _FOREACH_UNARY[op.name]
        x = self.materialize(arg)
        if in_fn is not None and self.writable(x, arg):
            self.emit(in_fn, x)
            return x
        if out_fn is not None:
            return self.fresh(out_fn, x, shape=shape)
        return self.generic(op, [x], shape)

    def binary(self, op: ops.Op, a: list, shape: Shape):
        """maximum / minimum / pow / clip, in place on a dying first operand."""
        name = op.name
        if name in ("maximum", "minimum") and isinstance(a[0], Scalar):
            a = [a[1], a[0]]
        if isinstance(a[0], Scalar):
            return self.generic(op, a, shape)
        x = self.materialize(a[0])
        self.hold.append(x)
        y = a[1] if isinstance(a[1], Scalar) else self.materialize(a[1])
        self.hold.pop()
        if x.shape != shape or not self.writable(x, a[0]) or x.buf in _refs(y):
            return self.generic(op, [x, y], shape)
        if isinstance(y, Scalar) and not y.tensor:
            if name == "pow":
                c = y.const
                if c is None or c != c or abs(c) == float("inf"):
                    return self.generic(op, [x, y], shape)
                self.emit("pow_", x, y)
            elif name == "clip":
                self.emit("clamp_min_", x, self.sop(ops.REGISTRY["neg"], y))
                self.emit("clamp_max_", x, y)
            else:
                fn = "clamp_min_" if name == "maximum" else "clamp_max_"
                self.emit(fn, x, y)
            return x
        if name in ("maximum", "minimum") and isinstance(y, Tensors):
            fn = "maximum_" if name == "maximum" else "minimum_"
            self.emit(fn, x, y)
            return x
        return self.generic(op, [x, y], shape)

    def generic(self, op: ops.Op, args: list, shape: Shape) -> Tensors:
        """Any op: its multi-tensor form if it has one, else one call per tensor."""
        vals = []
        for a in args:
            vals.append(a if isinstance(a, Scalar) else self.materialize(a))
            self.hold.append(vals[-1])
        del self.hold[len(self.hold) - len(vals):]
        if op.name == "transpose":  # a view: shares its operand's buffer
            x = vals[0]
            r = self._reg()
            self.emit("transpose", x, dest=r)
            return Tensors(r, x.buf, shape, view=True)
        r = self._reg()
        self.emit("each", *vals, dest=r, op=op.name)
        self.owned.add(r)
        return Tensors(r, r, shape)

    # ------------------------------------------------------------ the program
    def build(self) -> Trace:
        plan = self.plan
        for i, ins in enumerate(plan.instrs):
            self.at, self.stmt = i, plan.instr_stmt[i]
            self.hold = [self.env[a] for a in ins.args]
            v = self.op(ins.op, list(self.hold), plan.shape[ins.dest])
            self.hold = []
            if isinstance(v, _Lin) and plan.uses[ins.dest] > 1 and self.single(v) is None:
                v = self.materialize(v)  # read more than once: compute it once
            self.env[ins.dest] = v
            if (isinstance(v, Scalar | Tensors) and v.reg is not None
                    and ins.dest in plan.stmt_value):
                self.named.setdefault(v.reg, plan.instr_stmt[i])
        self.at, self.stmt = len(plan.instrs), len(plan.program.body)
        vals = [self.env[r] for r in plan.outputs]
        self.env = {}
        return _Outputs(self, vals).run()


class _Outputs:
    """The end of a trace: materialise the new slots and apply (or return) the update.

    Order matters: a slot is updated in its own tensors only once no other
    output reads its old value, and the parameters only once no slot reads
    them; a cycle is broken by giving one slot a new buffer. A slot's new value
    is then kept where it is (its own tensors, or a buffer of the step that no
    other output holds) or copied into its own tensors.
    """

    def __init__(self, tracer: _Tracer, vals: list):
        self.t = tracer
        self.vals = vals
        tracer.hold = vals  # every output is live until the end
        plan = tracer.plan
        self.own = [Tensors(r, r, plan.shape[r]) if r in tracer.owned else None
                    for r in plan.slot_regs]
        self.where: dict[int, int | None] = {}
        self.claimed: set[int] = set()

    def run(self) -> Trace:
        t, vals = self.t, self.vals
        n_slots = len(self.own)
        todo = [i for i in range(n_slots) if isinstance(vals[1 + i], _Lin)]
        ready = [i for i in range(n_slots) if i not in todo]
        update_done = not t.apply
        while todo or ready or not update_done:
            progress = False
            for i in list(todo):
                v, mine = vals[1 + i], self.own[i]
                if mine is not None and mine.buf in _refs(v) and not t.writable(mine, v):
                    continue  # another output still reads the old value
                vals[1 + i] = t.materialize(v)
                todo.remove(i)
                ready.append(i)
                progress = True
            ready.sort(key=lambda i: not self.in_own(i))
            for i in list(ready):
                if self.secure(i, force=False):
                    ready.remove(i)
                    progress = True
            if not update_done and not any(t.w.buf in _refs(v) for v in vals[1:]):
                self.apply_update()
                vals[0] = None  # applied: reads nothing any more
                update_done = progress = True
            if not progress:  # a cycle: one slot gets a buffer of its own
                if todo:
                    i = todo.pop(0)
                    vals[1 + i] = t.materialize(vals[1 + i])
                    ready.append(i)
                else:
                    self.secure(ready.pop(0), force=True)
        update = None
        if not t.apply:
            u = vals[0]
            if isinstance(u, _Lin):
                u = t.materialize(u)
            update = self.register(u)
        slots = [self.where[i] for i in range(n_slots)]
        return Trace(t.n, t.kernels, update, slots, t.plan.n_regs, t.named)

    def in_own(self, i: int) -> bool:
        v, mine = self.vals[1 + i], self.own[i]
        return isinstance(v, Tensors) and mine is not None and v.reg == mine.reg

    def register(self, v) -> int:
        if isinstance(v, Tensors) or v.const is None:
            return v.reg
        r, c = self.t._reg(), v.const
        self.t.emit("const", c, dest=r)
        return r

    def secure(self, i: int, force: bool) -> bool:
        """Settle where slot ``i``'s new value lives (see class docstring)."""
        t, v, mine = self.t, self.vals[1 + i], self.own[i]
        if isinstance(v, Tensors) and not v.view and v.buf in t.owned and v.buf not in self.claimed:
            self.claimed.add(v.buf)
            self.where[i] = None if self.in_own(i) else v.reg
            return True
        if (mine is not None and mine.buf not in self.claimed and mine.buf not in _refs(v)
                and t.writable(mine, v)):
            t.materialize(v, into=mine)
            self.vals[1 + i] = mine
            self.claimed.add(mine.buf)
            self.where[i] = None
            return True
        if not force:
            return False
        if isinstance(v, Scalar):
            self.where[i] = self.register(v)
            return True
        c = t.fresh("clone", v, shape=v.shape)
        self.vals[1 + i] = c
        self.claimed.add(c.buf)
        self.where[i] = c.reg
        return True

    def apply_update(self) -> None:
        """``w <- w - update`` in place, as one combination."""
        t, u, w = self.t, self.vals[0], self.t.w
        if isinstance(u, Scalar):
            t.emit("add_", w, t.sop(ops.REGISTRY["neg"], u))
            return
        target = t.combine(w, t.scale(u, MINUS_ONE))
        t.hold.append(target)
        t.materialize(target, into=w)
        t.hold.pop()


_IN_PLACE = {"x": "add_alpha_", "mul": "addcmul_", "div": "addcdiv_"}
_OUT_OF_PLACE = {"x": "add_alpha", "mul": "addcmul", "div": "addcdiv"}
