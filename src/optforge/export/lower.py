"""Lowering: a program -> the Python source of its multi-tensor update function.

The function takes lists with one tensor per parameter (``w``, ``g``, ``h``, one
list per state slot) and Python floats (``lr``, ``step``, hyperparameters); it
updates ``w`` and the slots in place and returns the slots it replaces with new
tensors. It is straight-line code, one commented block per program statement.

Every IR value has one of three kinds, fixed at export time:

* a Python float (a uniform scalar: constants, hyperparameters, ``lr``, ``step``
  and element-wise ops on them), computed once per step with the op's
  ``scalar`` template;
* a uniform tensor (a global reduction), computed once per step;
* a per-parameter list, kept lazily as a linear combination
  ``sum_i c_i * atom_i (+ k)``: the ``c_i`` and ``k`` are floats, an atom is a
  list ``x``, a product ``x * y`` or a quotient ``x / y`` of lists. ``add sub
  mul div neg square interp`` only rearrange these; a combination is written out
  (materialised) when a non-linear op needs it, with fused kernels
  (``_foreach_add_(acc, x, alpha=c)``, ``_foreach_addcmul_``, ``_foreach_addcdiv_``),
  and the update is applied to ``w`` the same way (``w <- w (1 - c_w) - ...``).
  So AdamW's ``m_hat / (sqrt(v_hat) + eps)`` becomes one ``addcdiv_`` into ``w``.

A list is overwritten in place only when it is the step's own (a temporary, or a
state slot's tensors) and nothing live reads it any more: every value counts
its remaining uses, and a list is pending while any value referring to it has
some. The rearrangements are exact in real arithmetic; in floating point the
result differs from :mod:`optforge.lang.runtime` by rounding only.

With matrix ops in the program, every tensor is the 2-D view ``R x C`` of its
parameter (reductions keep ``1 x 1``); without, tensors keep their own shapes
(reductions give 0-d tensors), which is the same arithmetic without any views.
"""

from __future__ import annotations

import keyword
import math
import re
import textwrap
from collections import Counter
from dataclasses import dataclass, field

from ..lang import ops
from ..lang.canon import eliminate_dead_code
from ..lang.infer import infer
from ..lang.ir import Call, Const, Expr, Program, Var, expr_source, walk
from ..lang.shapes import SCALAR, Shape, broadcast
from .templates import ATOM, TEMPLATES, Py, dims, negate, number

LINE = 100
INDENT = "    "
RESERVED = frozenset({
    "torch", "math", "numbers", "zip", "len", "float", "int", "sum", "abs", "max", "min",
    "range", "isinstance", "complex", "self", "super", "None", "True", "False",
})
"""Names the generated code uses itself; program names equal to one are renamed."""

ONE = Const(1.0)


class ExportError(ValueError):
    """A program or an option that cannot be exported as asked."""


# ------------------------------------------------------------------- values


@dataclass(eq=False)
class ListVar:
    """A list variable of the generated code: one tensor per parameter."""

    name: str
    shape: Shape
    owned: bool  # the step may overwrite it: a temporary, or a state slot's tensors
    slot: str | None = None  # the state slot whose stored tensors these are


@dataclass(frozen=True, eq=False)
class Atom:
    kind: str  # "ref" | "prod" | "quot"
    a: ListVar
    b: ListVar | None = None

    @property
    def shape(self) -> Shape:
        return self.a.shape if self.b is None else broadcast(self.a.shape, self.b.shape)

    def same(self, other: Atom) -> bool:
        return self.kind == other.kind and self.a is other.a and self.b is other.b


@dataclass(eq=False)
class F:
    """A uniform scalar: a Python float expression over scalar names of the function."""

    expr: Expr


@dataclass(eq=False)
class T:
    """A uniform tensor (0-d, or 1 x 1 in the 2-D view)."""

    name: str


@dataclass(eq=False)
class L:
    """A per-parameter list: ``sum(c * atom for c, atom in terms) + const``."""

    terms: tuple[tuple[Expr, Atom], ...]
    const: Expr | None
    shape: Shape
    uses: int = 1
    hint: str = "tmp"

    def refs(self) -> list[ListVar]:
        out = []
        for _, atom in self.terms:
            out.append(atom.a)
            if atom.b is not None:
                out.append(atom.b)
        return out

    @property
    def simple(self) -> ListVar | None:
        """The list itself when this is exactly one list (coefficient 1, no constant)."""
        if len(self.terms) == 1 and self.const is None:
            c, atom = self.terms[0]
            if atom.kind == "ref" and _is(c, 1.0):
                return atom.a
        return None


Value = F | T | L


def _is(e: Expr | None, value: float) -> bool:
    return isinstance(e, Const) and e.value == value


# --------------------------------------------------------- scalar expressions


def fold(e: Call) -> Expr:
    """A call on constants only becomes its value (exactly as the runtime computes it)."""
    op = ops.REGISTRY[e.op]
    if op.scalar is not None and all(isinstance(a, Const) for a in e.args):
        return Const(float(op.scalar(*(a.value for a in e.args))))
    return e


def s_neg(a: Expr) -> Expr:
    if isinstance(a, Const):
        return Const(-a.value)
    if isinstance(a, Call) and a.op == "neg":
        return a.args[0]
    return Call("neg", (a,))


def s_add(a: Expr | None, b: Expr | None) -> Expr | None:
    if a is None or _is(a, 0.0):
        return b
    if b is None or _is(b, 0.0):
        return a
    if isinstance(b, Call) and b.op == "neg":
        return s_sub(a, b.args[0])
    if isinstance(b, Const) and b.value < 0:
        return s_sub(a, Const(-b.value))
    return fold(Call("add", (a, b)))


def s_sub(a: Expr, b: Expr) -> Expr:
    if _is(b, 0.0):
        return a
    if _is(a, 0.0):
        return s_neg(b)
    if _is(a, 1.0) and isinstance(b, Call) and b.op == "sub" and _is(b.args[0], 1.0):
        return b.args[1]  # 1 - (1 - x) -> x
    return fold(Call("sub", (a, b)))


def s_mul(a: Expr, b: Expr) -> Expr:
    for x, y in ((a, b), (b, a)):
        if _is(x, 1.0):
            return y
        if _is(x, -1.0):
            return s_neg(y)
    for x, y in ((a, b), (b, a)):
        if isinstance(y, Call) and y.op == "div" and _is(y.args[0], 1.0):
            return s_div(x, y.args[1])  # x * (1 / y) -> x / y
    return fold(Call("mul", (a, b)))


def s_div(a: Expr, b: Expr) -> Expr:
    if _is(b, 1.0):
        return a
    return fold(Call("div", (a, b)))


def scalar_py(e: Expr) -> Py:
    """Python source of a scalar expression (Vars are names of the generated code)."""
    if isinstance(e, Var):
        return Py(e.name)
    if isinstance(e, Const):
        if math.isnan(e.value):
            return Py("math.nan")
        if math.isinf(e.value):
            return Py("math.inf") if e.value > 0 else negate(Py("math.inf"))
        return number(e.value)
    assert isinstance(e, Call)
    return TEMPLATES[e.op].scalar(*(scalar_py(a) for a in e.args))


# ------------------------------------------------------------------- names


class Namer:
    """Unique Python names (each bound once): a program name keeps its own at its first
    binding; temporaries avoid every program name."""

    def __init__(self, program_names: set[str]):
        self.used: set[str] = set(RESERVED)
        self.program = set(program_names)

    def claim(self, name: str) -> str:
        """``name`` if still free, else a fresh variant of it."""
        if name.isidentifier() and not keyword.iskeyword(name) and name not in self.used:
            self.used.add(name)
            return name
        return self.fresh(name)

    def fresh(self, base: str) -> str:
        """A name derived from ``base`` that is neither used nor a program name."""
        base = base if base.isidentifier() and not keyword.iskeyword(base) else "v"
        taken = self.used | self.program
        name, i = base, 2
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name


# ------------------------------------------------------------------ lowering


@dataclass
class Lowered:
    """The update function and what the optimizer class needs to call it."""

    source: str  # the source text of the two functions
    function: str  # the update function: Python floats, then the kernel function
    kernels: str  # the kernel function (tensor code only), floats as Python floats
    tkernels: str  # the same with floats as 0-d tensors: what torch.compile compiles
    inputs: list[str]  # reserved inputs in argument order (w, g, h, lr, step that it reads)
    slots: list[str]  # state slots (their lists follow the inputs w, g, h)
    hyper: list[str]  # hyperparameters, after lr and step
    replaced: list[str]  # slots returned as new lists, in return order
    slot_shapes: dict[str, Shape]
    matrix: bool  # tensors are 2-D views (the program has matrix ops)
    reads_hessian: bool
    program: Program  # the live program that was lowered
    kernel_arg: str = "kernels"  # the update function's argument taking the kernel function


@dataclass
class _Emitter:
    """Python-float code (``scalar``) and tensor code in two flavours: ``kernel`` takes the
    floats as Python floats, ``tkernel`` as 0-d tensors (for torch.compile, which would
    specialise on every new float value). The program statement being lowered is written
    as a comment before its first line in each stream."""

    kernel: list[str] = field(default_factory=list)
    tkernel: list[str] = field(default_factory=list)
    scalar: list[str] = field(default_factory=list)
    note: str | None = None
    noted: list[list[str]] = field(default_factory=list)

    def begin(self, text: str) -> None:
        self.note, self.noted = text, []

    def end(self) -> None:
        if self.note is not None and not self.noted:
            for stream in (self.kernel, self.tkernel):
                self._comment(stream, self.note)
                self._comment(stream, "(computed where it is used)")
        self.note = None

    def line(self, text: str, tensor: str | None = None) -> None:
        """A line of tensor code; ``tensor`` is its form with 0-d tensor scalars, if other."""
        self._emit(self.kernel, text)
        self._emit(self.tkernel, text if tensor is None else tensor)

    def scalar_line(self, text: str) -> None:
        self._emit(self.scalar, text)

    def _emit(self, stream: list[str], text: str) -> None:
        if self.note is not None and not any(stream is s for s in self.noted):
            self._comment(stream, self.note)
            self.noted.append(stream)
        stream.extend(wrap_line(INDENT + text))

    @staticmethod
    def _comment(stream: list[str], text: str) -> None:
        for line in textwrap.wrap(text, LINE - len(INDENT) - 2, subsequent_indent="    "):
            stream.append(f"{INDENT}# {line}")


def wrap_line(line: str) -> list[str]:
    """Fit a line of code into LINE characters: break inside its longest bracket pair
    (one argument per line if they do not fit on one), recursively."""
    if len(line) <= LINE:
        return [line]
    indent = line[: len(line) - len(line.lstrip())]
    stack, best = [], None
    for i, ch in enumerate(line):
        if ch in "([{":
            stack.append(i)
        elif ch in ")]}" and stack:
            j = stack.pop()
            if i - j > 1 and (best is None or i - j > best[1] - best[0]):
                best = (j, i)
    if best is None:
        head, eq, rhs = line.partition(" = ")
        if eq and len(indent + INDENT + rhs) <= LINE:  # x = (\n    long expression\n)
            return [f"{head} = (", indent + INDENT + rhs, indent + ")"]
        return [line + "  # noqa: E501"]
    j, i = best
    head, body, tail = line[: j + 1], line[j + 1: i], line[i:]
    inner = indent + INDENT + body.strip()
    parts = _split_top(body)
    if len(inner) > LINE and len(parts) > 1:
        lines = [head]
        for part in parts:
            lines += wrap_line(f"{indent}{INDENT}{part},")
        return [*lines, indent + tail]
    if len(inner) >= len(line):  # no progress
        return [line + "  # noqa: E501"]
    return [head, *wrap_line(inner), indent + tail]


def _split_top(text: str) -> list[str]:
    parts, depth, last = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[last:i])
            last = i + 1
    parts.append(text[last:])
    return [p for p in (p.strip() for p in parts) if p]


def lower(program: Program, function: str | None = None) -> Lowered:
    """Lower ``program`` (dead code removed first) to its update function."""
    return _Lowering(program, function).run()


class _Lowering:
    def __init__(self, program: Program, function: str | None):
        live = eliminate_dead_code(program)
        # keep every hyperparameter (the optimizer's arguments), drop dead code and slots
        self.program = Program(live.name, live.params, program.hyper, live.body, live.returns,
                               program.doc)
        p = self.program
        self.matrix = any(
            isinstance(n, Call) and ops.REGISTRY[n.op].family == "matrix"
            for e in [s.expr for s in p.body] + list(p.returns) for n in walk(e))
        self.typing = infer(p)
        self.dims = dims(self.matrix)
        self.names = Namer(set(p.params) | {k for k, _ in p.hyper} | {s.target for s in p.body})
        self.py: dict[str, str] = {}  # signature name -> Python name
        for n in [*p.params, *(k for k, _ in p.hyper)]:
            self.py[n] = self.names.claim(n)
        if "w" not in self.py:  # w is always an argument: the update is applied to it
            self.py["w"] = self.names.claim("w")
        self.loop = [self.names.fresh(x) for x in ("x", "y", "z")]
        self.function = self.names.fresh(function or f"{p.name}_update")
        self.kernels = self.names.fresh(f"{p.name}_kernels")
        self.tkernels = self.names.fresh(f"{p.name}_tensor_kernels")
        self.kernel_arg = self.names.fresh("kernels")  # a slot may be called kernels
        self.scalars: list[str] = []  # names of Python floats, in order of definition
        self.out = _Emitter()
        self.pending: Counter[ListVar] = Counter()
        self.env: dict[str, Value] = {}
        self.rep: dict[str, ListVar] = {}
        self.hoisted: dict[tuple[str, str], str] = {}
        self.coefs: dict[Expr, Py] = {}
        self.stored: set[ListVar] = set()
        self.use_counts = self._count_uses()

    # ------------------------------------------------------------ bookkeeping
    def _count_uses(self) -> list[int]:
        """Uses of each binding, in binding order: signature names, then statements."""
        p = self.program
        ids: dict[str, int] = {}
        counts: list[int] = []
        for n in [*p.params, *(k for k, _ in p.hyper)]:
            ids[n] = len(counts)
            counts.append(0)
        for stmt in p.body:
            for node in walk(stmt.expr):
                if isinstance(node, Var):
                    counts[ids[node.name]] += 1
            ids[stmt.target] = len(counts)
            counts.append(0)
        for e in p.returns:
            for node in walk(e):
                if isinstance(node, Var):
                    counts[ids[node.name]] += 1
        return counts

    def retain(self, v: Value, n: int | None = None) -> None:
        if isinstance(v, L):
            n = v.uses if n is None else n
            for lv in set(v.refs()):
                self.pending[lv] += n

    def release(self, v: Value) -> None:
        if isinstance(v, L):
            v.uses -= 1
            for lv in set(v.refs()):
                self.pending[lv] -= 1

    def set_uses(self, v: L, uses: int) -> None:
        self.retain(v, uses - v.uses)
        v.uses = uses

    def mutable(self, lv: ListVar, occ: Counter) -> bool:
        """Whether ``lv`` may be overwritten by the op now consuming its operands."""
        return lv.owned and self.pending[lv] == 0 and occ[lv] == 1 and lv not in self.stored

    def new_list(self, hint: str, shape: Shape, code: str, owned: bool = True,
                 tensor: str | None = None) -> ListVar:
        lv = ListVar(self.names.claim(hint), shape, owned)
        self.out.line(f"{lv.name} = {code}", None if tensor is None else f"{lv.name} = {tensor}")
        return lv

    def list_value(self, lv: ListVar, hint: str = "tmp") -> L:
        """A new value that is exactly the list ``lv`` (retained by the caller)."""
        return L(((ONE, Atom("ref", lv)),), None, lv.shape, 1, hint)

    # ------------------------------------------------------------ scalars
    def coef(self, e: Expr) -> Py:
        """A scalar argument of a kernel: inline when short, else a named float."""
        py = scalar_py(e)
        if len(py.text) <= 28 and "(" not in py.text or isinstance(e, Var | Const):
            return py
        if e not in self.coefs:
            name = self.names.fresh("c")
            self.emit_scalar(name, e)
            self.coefs[e] = Py(name)
            self.scalars.append(name)
        return self.coefs[e]

    def emit_scalar(self, name: str, e: Expr) -> None:
        """``name = <e>``, hoisting sub-expressions into names until the line fits."""
        text = scalar_py(e).text
        while len(INDENT) + len(name) + 3 + len(text) > LINE and isinstance(e, Call):
            smaller = self._hoist_largest(e)
            if smaller is e:
                break
            e, text = smaller, scalar_py(smaller).text
        self.out.scalar_line(f"{name} = {text}")

    def _hoist_largest(self, e: Call) -> Expr:
        sizes = [(len(scalar_py(a).text), i) for i, a in enumerate(e.args)
                 if isinstance(a, Call)]
        if not sizes:
            return e
        _, i = max(sizes)
        arg = e.args[i]
        if len(scalar_py(arg).text) > LINE - 20 and isinstance(arg, Call):
            arg = self._hoist_largest(arg)
        name = self.names.fresh("s")
        self.out.scalar_line(f"{name} = {scalar_py(arg).text}")
        self.scalars.append(name)
        args = list(e.args)
        args[i] = Var(name)
        return Call(e.op, tuple(args))

    def as_tensor(self, x: F, uniform: bool = False) -> str:
        """A float as a tensor of the parameters' dtype and device (0-d, or 1 x 1 for a
        uniform value in the 2-D view), computed once per step."""
        py = self.coef(x.expr)
        like = f"{self.py['w']}[0]"
        shaped = uniform and self.matrix
        key = (py.text, "11" if shaped else "0d")
        if key not in self.hoisted:
            name = self.names.fresh("k")
            code = f"{like}.new_full((1, 1), {py})" if shaped else f"{like}.new_tensor({py})"
            tensor = (f"torch.as_tensor({py}, dtype={like}.dtype, device={like}.device)"
                      + (".reshape(1, 1)" if shaped else ""))
            self.out.line(f"{name} = {code}", f"{name} = {tensor}")
            self.hoisted[key] = name
        return self.hoisted[key]

    def replicate(self, t: T) -> ListVar:
        """A uniform tensor as a list (the same tensor for every parameter; never written)."""
        if t.name not in self.rep:
            self.rep[t.name] = self.new_list(f"{t.name}_each", SCALAR,
                                             f"[{t.name}] * len({self.py['w']})", owned=False)
        return self.rep[t.name]

    # ------------------------------------------------------------ materialising
    def lin(self, v: Value) -> L:
        if isinstance(v, T):
            return L(((ONE, Atom("ref", self.replicate(v))),), None, SCALAR, 0)
        assert isinstance(v, L)
        return v

    def materialise(self, v: Value, occ: Counter, hint: str | None = None
                    ) -> tuple[ListVar, bool]:
        """Write ``v`` out as one list; also whether the caller may overwrite that list."""
        if isinstance(v, T):
            return self.replicate(v), False
        assert isinstance(v, L)
        lv = v.simple
        if lv is not None:
            return lv, self.mutable(lv, occ)
        # the value's own references end here: its later uses read the written list
        self.retain(v, -v.uses)
        out = self._combine(list(v.terms), v.const, v.shape, occ, hint or v.hint)
        v.terms, v.const = ((ONE, Atom("ref", out)),), None
        self.retain(v)
        return out, v.uses == 0

    def _term_list(self, coef: Expr, atom: Atom, occ: Counter, hint: str, shape: Shape
                   ) -> ListVar:
        """One term as a new (or overwritten) list."""
        a, b = atom.a, atom.b
        if atom.kind == "ref":
            if self.mutable(a, occ) and a.shape == shape:
                if not _is(coef, 1.0):
                    self.out.line(f"torch._foreach_mul_({a.name}, {self.coef(coef)})")
                return a
            if _is(coef, 1.0):
                return self.new_list(hint, a.shape, f"[{self.loop[0]}.clone() for "
                                     f"{self.loop[0]} in {a.name}]")
            return self.new_list(hint, a.shape,
                                 f"torch._foreach_mul({a.name}, {self.coef(coef)})")
        kernel = "mul" if atom.kind == "prod" else "div"
        target = None
        if self.mutable(a, occ) and a.shape == atom.shape and a is not b:
            target = a
        elif atom.kind == "prod" and self.mutable(b, occ) and b.shape == atom.shape:
            a, b, target = b, a, b
        if target is not None:
            self.out.line(f"torch._foreach_{kernel}_({a.name}, {b.name})")
        else:
            target = self.new_list(hint, atom.shape,
                                   f"torch._foreach_{kernel}({a.name}, {b.name})")
        if not _is(coef, 1.0):
            self.out.line(f"torch._foreach_mul_({target.name}, {self.coef(coef)})")
        return target

    def _accumulate(self, acc: ListVar, coef: Expr, atom: Atom) -> None:
        """``acc += coef * atom`` in place."""
        c = self.coef(coef)
        a, b = atom.a.name, atom.b.name if atom.b else None
        if atom.kind == "ref":
            if _is(coef, 1.0):
                self.out.line(f"torch._foreach_add_({acc.name}, {a})")
            elif _is(coef, -1.0):
                self.out.line(f"torch._foreach_sub_({acc.name}, {a})")
            else:
                self.out.line(f"torch._foreach_add_({acc.name}, {a}, alpha={c})",
                              None if c.value is not None else
                              f"torch._foreach_add_({acc.name}, torch._foreach_mul({a}, {c}))")
        else:
            kernel = "addcmul_" if atom.kind == "prod" else "addcdiv_"
            value = "" if _is(coef, 1.0) else f", value={c}"
            self.out.line(f"torch._foreach_{kernel}({acc.name}, {a}, {b}{value})",
                          None if not value or c.value is not None else
                          f"torch._foreach_add_({acc.name}, {self._scaled(atom, c)})")

    @staticmethod
    def _scaled(atom: Atom, c: Py) -> str:
        """``c * atom`` as one expression of out-of-place kernels (0-d tensor ``c``)."""
        if atom.kind == "ref":
            return f"torch._foreach_mul({atom.a.name}, {c})"
        kernel = "mul" if atom.kind == "prod" else "div"
        return f"torch._foreach_mul(torch._foreach_{kernel}({atom.a.name}, {atom.b.name}), {c})"

    def _combine(self, terms: list, const: Expr | None, shape: Shape, occ: Counter,
                 hint: str) -> ListVar:
        """Write ``sum(c * atom) + const`` into one list, in place where allowed."""
        # the accumulator: an overwritable full-shape list among the terms, else a new list
        # from the first full-shape term (the others are then added into it in place)
        pick = next((i for i, (_, a) in enumerate(terms)
                     if a.kind == "ref" and a.a.shape == shape and self.mutable(a.a, occ)), None)
        if pick is not None:
            acc = self._term_list(*terms.pop(pick), occ, hint, shape)
        else:
            coef, atom = terms.pop(next((i for i, (_, a) in enumerate(terms)
                                         if a.shape == shape), 0))
            if atom.kind == "ref" and _is(coef, 1.0) and terms:  # x + c y: one kernel
                c2, a2 = terms.pop(0)
                acc = self._first_pair(atom.a, c2, a2, hint, broadcast(atom.shape, a2.shape))
            elif atom.kind == "ref" and _is(coef, 1.0) and const is not None:  # x + k
                acc = self.new_list(hint, atom.shape, f"torch._foreach_add({atom.a.name}, "
                                    f"{self.coef(const)})")
                const = None
            else:
                acc = self._term_list(coef, atom, occ, hint, shape)
        for c, a in terms:
            if broadcast(acc.shape, a.shape) != acc.shape:  # the sum grows: out of place
                acc = self._first_pair(acc, c, a, hint, broadcast(acc.shape, a.shape))
            else:
                self._accumulate(acc, c, a)
        if const is not None:
            self.out.line(f"torch._foreach_add_({acc.name}, {self.coef(const)})")
        return acc

    def _first_pair(self, x: ListVar, coef: Expr, atom: Atom, hint: str, shape: Shape
                    ) -> ListVar:
        """``x + coef * atom`` as a new list, in one kernel."""
        c = self.coef(coef)
        if atom.kind == "ref":
            alpha = "" if _is(coef, 1.0) else f", alpha={c}"
            code = f"torch._foreach_add({x.name}, {atom.a.name}{alpha})"
        else:
            kernel = "addcmul" if atom.kind == "prod" else "addcdiv"
            value = "" if _is(coef, 1.0) else f", value={c}"
            code = f"torch._foreach_{kernel}({x.name}, {atom.a.name}, {atom.b.name}{value})"
        tensor = None
        if not _is(coef, 1.0) and c.value is None:
            tensor = f"torch._foreach_add({x.name}, {self._scaled(atom, c)})"
        return self.new_list(hint, shape, code, tensor=tensor)

    # ------------------------------------------------------------ the algebra
    def scale(self, v: L, c: Expr) -> L:
        terms = tuple((s_mul(c, k), a) for k, a in v.terms)
        const = None if v.const is None else s_mul(c, v.const)
        return L(terms, const, v.shape)

    def add(self, a: Value, b: Value) -> Value:
        if isinstance(a, F) and isinstance(b, F):
            return F(s_add(a.expr, b.expr))
        if isinstance(a, F):
            a, b = b, a
        if isinstance(b, F):
            la = self.lin(a)
            return L(la.terms, s_add(la.const, b.expr), la.shape)
        la, lb = self.lin(a), self.lin(b)
        terms: list[tuple[Expr, Atom]] = list(la.terms)
        for c, atom in lb.terms:
            for i, (c0, a0) in enumerate(terms):
                if a0.same(atom):
                    terms[i] = (s_add(c0, c), a0)
                    break
            else:
                terms.append((c, atom))
        return L(tuple(terms), s_add(la.const, lb.const), broadcast(la.shape, lb.shape))

    def neg(self, v: Value) -> Value:
        if isinstance(v, F):
            return F(s_neg(v.expr))
        return self.scale(self.lin(v), Const(-1.0))

    def mul(self, a: Value, b: Value, occ: Counter, hint: str) -> Value:
        if isinstance(a, F) and isinstance(b, F):
            return F(s_mul(a.expr, b.expr))
        if isinstance(a, F):
            return self.scale(self.lin(b), a.expr)
        if isinstance(b, F):
            return self.scale(self.lin(a), b.expr)
        (ca, xa), (cb, xb) = self._factor(a, occ, hint), self._factor(b, occ, hint)
        return L(((s_mul(ca, cb), Atom("prod", xa, xb)),), None, broadcast(xa.shape, xb.shape))

    def _factor(self, v: Value, occ: Counter, hint: str) -> tuple[Expr, ListVar]:
        """``v`` as ``c * x`` with ``x`` a list (written out when it is more than that)."""
        lv = self.lin(v)
        if len(lv.terms) == 1 and lv.const is None and lv.terms[0][1].kind == "ref":
            return lv.terms[0][0], lv.terms[0][1].a
        x, _ = self.materialise(v, occ, hint)
        return ONE, x

    def div(self, a: Value, b: Value, occ: Counter, hint: str) -> Value:
        if isinstance(a, F) and isinstance(b, F):
            return F(s_div(a.expr, b.expr))
        if isinstance(b, F):
            return self.scale(self.lin(a), s_div(ONE, b.expr))
        if isinstance(a, F):
            x, writable = self.materialise(b, occ, hint)
            if writable and x.owned:
                self.out.line(f"torch._foreach_reciprocal_({x.name})")
                r = x
            else:
                r = self.new_list(hint, x.shape, f"torch._foreach_reciprocal({x.name})")
            return L(((a.expr, Atom("ref", r)),), None, r.shape)
        (ca, xa), (cb, xb) = self._factor(a, occ, hint), self._factor(b, occ, hint)
        return L(((s_div(ca, cb), Atom("quot", xa, xb)),), None, broadcast(xa.shape, xb.shape))

    def interp(self, a: Value, b: Value, t: Value, occ: Counter, hint: str,
               shape: Shape) -> Value:
        if isinstance(t, F):
            la = None if isinstance(a, F) else self.lin(a)
            lb = None if isinstance(b, F) else self.lin(b)
            if la is not None and lb is not None and la.simple and lb.simple:
                return self.kernel("interp", "LLF", [a, b, t], occ, hint, shape)
            # (1 - t) a + t b, folded into the linear combination
            left = self.mul(a, F(s_sub(ONE, t.expr)), occ, hint)
            return self.add(left, self.mul(b, t, occ, hint))
        if isinstance(a, F) or isinstance(b, F):
            return self.each("interp", [a, b, t], occ, hint, shape)
        return self.kernel("interp", "LLL", [a, b, t], occ, hint, shape)

    # ------------------------------------------------------------ other ops
    def kernel(self, name: str, kinds: str, args: list[Value], occ: Counter, hint: str,
               shape: Shape) -> L:
        """A multi-tensor kernel sequence from the op's ``foreach`` template."""
        steps = TEMPLATES[name].foreach[kinds]
        lists: list[ListVar | None] = []
        writable: list[bool] = []
        for v in args:
            if isinstance(v, F):
                lists.append(None)
                writable.append(False)
            else:
                x, w = self.materialise(v, occ)
                lists.append(x)
                writable.append(w)
        first = steps[0][1].split(",")[0].strip()  # "{a}" or "{b}": the operand written
        pos = "abc".index(first[1])
        op = ops.REGISTRY[name]
        if (op.commutative and kinds == "LL" and not writable[0] and writable[1]
                and lists[1].shape == shape):
            lists.reverse()
            writable.reverse()
            args = args[::-1]
        fmt, tfmt = self._fmt(args, lists, False), self._fmt(args, lists, True)
        kernel, pattern = steps[0]
        target = lists[pos]
        if target is not None and writable[pos] and target.shape == shape:
            self.out.line(f"torch._foreach_{kernel}_({pattern.format(**fmt)})",
                          f"torch._foreach_{kernel}_({pattern.format(**tfmt)})")
        else:
            target = self.new_list(hint, shape, f"torch._foreach_{kernel}({pattern.format(**fmt)})",
                                   tensor=f"torch._foreach_{kernel}({pattern.format(**tfmt)})")
        for kernel, pattern in steps[1:]:
            self.out.line(f"torch._foreach_{kernel}_({target.name}, {pattern.format(**fmt)})",
                          f"torch._foreach_{kernel}_({target.name}, {pattern.format(**tfmt)})")
        return self.list_value(target, hint=hint)

    def _fmt(self, args: list[Value], lists: list[ListVar | None], tensor: bool
             ) -> dict[str, str]:
        """Operands of a ``foreach`` template; with ``tensor``, a float that is not a literal
        becomes a list of the 0-d tensor (the kernels' list overloads)."""
        fmt: dict[str, str] = {}
        first = next(x.name for x in lists if x is not None)
        for key, v, x in zip("abc", args, lists, strict=False):
            if x is not None:
                fmt[key] = fmt[f"neg_{key}"] = x.name  # (no template negates a list)
                continue
            py, neg = self.coef(v.expr), negate(self.coef(v.expr))
            if tensor and py.value is None:
                fmt[key], fmt[f"neg_{key}"] = f"[{py}] * len({first})", f"[{neg}] * len({first})"
            else:
                fmt[key], fmt[f"neg_{key}"] = py.text, neg.text
        return fmt

    def each(self, name: str, args: list[Value], occ: Counter, hint: str, shape: Shape
             ) -> Value:
        """An op tensor by tensor: a list comprehension over the parameters' lists, or one
        expression on uniform tensors."""
        tpl = TEMPLATES[name]
        fmt = dict(self.dims)
        if not any(isinstance(v, L) for v in args):  # uniform operands: a uniform tensor
            for key, i, v in zip("abc", range(3), args, strict=False):
                if isinstance(v, F):
                    fmt[key] = (self.as_tensor(v, uniform=True) if i in tpl.tensor_args
                                else _atom(self.coef(v.expr)))
                else:
                    fmt[key] = v.name
            if ops.REGISTRY[name].family == "global":  # a uniform value: once per parameter
                fmt["a"], fmt["x"] = f"[{fmt['a']}] * len({self.py['w']})", self.loop[0]
            t = T(self.names.claim(hint))
            self.out.line(f"{t.name} = {tpl.each.format(**fmt)}")
            return t
        loops: list[tuple[str, str]] = []
        matrix_op = ops.REGISTRY[name].family != "elementwise"  # sees floats as 1 x 1
        for key, i, v in zip("abc", range(3), args, strict=False):
            if isinstance(v, F):
                fmt[key] = (self.as_tensor(v, uniform=matrix_op) if i in tpl.tensor_args
                            else _atom(self.coef(v.expr)))
            elif isinstance(v, T):
                fmt[key] = v.name
            else:
                x, _ = self.materialise(v, occ)
                var = self.loop[len(loops)]
                loops.append((var, x.name))
                fmt[key] = var
        expr = tpl.each.format(**fmt)
        if len(loops) == 1:
            code = f"[{expr} for {loops[0][0]} in {loops[0][1]}]"
        else:
            names = ", ".join(v for v, _ in loops)
            lists = ", ".join(x for _, x in loops)
            code = f"[{expr} for {names} in zip({lists}, strict=True)]"
        lv = self.new_list(hint, shape, code, owned=not tpl.view)
        return self.list_value(lv, hint=hint)

    def reduce(self, name: str, args: list[Value], occ: Counter, hint: str, shape: Shape
               ) -> Value:
        """Per-tensor reductions and matrix ops (tensor by tensor), global reductions."""
        op = ops.REGISTRY[name]
        if op.family == "global" and isinstance(args[0], L):
            x, _ = self.materialise(args[0], occ)
            t = T(self.names.claim(hint))
            fmt = {**self.dims, "a": x.name, "x": self.loop[0]}
            self.out.line(f"{t.name} = {TEMPLATES[name].each.format(**fmt)}")
            return t
        if not any(isinstance(v, L) for v in args):
            args = [T(self.as_tensor(v, uniform=True)) if isinstance(v, F) else v for v in args]
        return self.each(name, args, occ, hint, shape)

    # ------------------------------------------------------------ expressions
    def shape_of(self, v: Value) -> Shape:
        return v.shape if isinstance(v, L) else SCALAR

    def expr(self, e: Expr, hint: str = "tmp") -> Value:
        if isinstance(e, Var):
            return self.env[e.name]
        if isinstance(e, Const):
            return F(e)
        assert isinstance(e, Call)
        args = [self.expr(a) for a in e.args]
        return self.apply(e.op, args, hint)

    def apply(self, name: str, args: list[Value], hint: str) -> Value:
        op = ops.REGISTRY[name]
        shape = op.shape(*(self.shape_of(v) for v in args))
        for v in args:
            self.release(v)
        operands = args * 2 if name == "square" else args
        occ = self._occurrences(operands)
        if any(self._shared(v) for v in args):
            # a named combination read again later is written out once, at its first use
            for v in args:
                if self._shared(v):
                    self.materialise(v, occ)
            occ = self._occurrences(operands)
        result = self._apply(op, args, occ, hint, shape)
        if isinstance(result, L):  # always a new value: one use, by the enclosing expression
            result.hint, result.uses = hint, 1
            self.retain(result)
        return result

    @staticmethod
    def _occurrences(values: list[Value]) -> Counter:
        occ: Counter[ListVar] = Counter()
        for v in values:
            if isinstance(v, L):
                occ.update(v.refs())
        return occ

    @staticmethod
    def _shared(v: Value) -> bool:
        """A value with uses to come that is more than one coefficient times one atom."""
        return isinstance(v, L) and v.uses > 0 and (len(v.terms) > 1 or v.const is not None)

    def _apply(self, op: ops.Op, args: list[Value], occ: Counter, hint: str, shape: Shape
               ) -> Value:
        name = op.name
        if all(isinstance(v, F) for v in args) and op.scalar is not None:
            return F(fold(Call(name, tuple(v.expr for v in args))))
        uniform = not any(isinstance(v, L) for v in args)
        if op.family != "elementwise":
            return self.reduce(name, args, occ, hint, shape)
        if uniform:
            return self.each(name, args, occ, hint, shape)
        if name == "add":
            return self.add(*args)
        if name == "sub":
            return self.add(args[0], self.neg(args[1]))
        if name == "neg":
            return self.neg(args[0])
        if name == "mul":
            return self.mul(*args, occ, hint)
        if name == "square":
            return self.mul(args[0], args[0], occ, hint)
        if name == "div":
            return self.div(*args, occ, hint)
        if name == "interp":
            return self.interp(*args, occ, hint, shape)
        kinds = "".join("F" if isinstance(v, F) else "L" for v in args)
        if kinds in TEMPLATES[name].foreach:
            return self.kernel(name, kinds, args, occ, hint, shape)
        return self.each(name, args, occ, hint, shape)

    # ------------------------------------------------------------ the function
    def run(self) -> Lowered:
        p = self.program
        counts = iter(self.use_counts)
        w = self.py["w"]
        for n in p.params:
            uses = next(counts)
            if n in ("lr", "step"):
                self.env[n] = F(Var(self.py[n]))
                self.scalars.append(self.py[n])
            else:
                shape = self.typing.slot_shapes.get(n, ("R", "C"))
                lv = ListVar(self.py[n], shape, owned=n in p.slots, slot=n if n in p.slots
                             else None)
                v = L(((ONE, Atom("ref", lv)),), None, shape, 0, n)
                self.set_uses(v, uses)
                self.env[n] = v
        for k, _ in p.hyper:
            next(counts)
            self.env[k] = F(Var(self.py[k]))
            self.scalars.append(self.py[k])
        self.w = ListVar(w, ("R", "C"), owned=False)
        if "w" in p.params:
            self.w = self.env["w"].terms[0][1].a
        for stmt in p.body:
            self.out.begin(f"{stmt.target} = {expr_source(stmt.expr)}")
            value = self.expr(stmt.expr, hint=stmt.target)
            self.env[stmt.target] = self.bind(stmt.target, value, next(counts))
            self.out.end()
        replaced = self.finish()
        return self.result(replaced)

    def bind(self, target: str, v: Value, uses: int) -> Value:
        if isinstance(v, F):
            if isinstance(v.expr, Var | Const):
                return v
            name = self.names.claim(target)
            self.emit_scalar(name, v.expr)
            self.scalars.append(name)
            return F(Var(name))
        if isinstance(v, T):
            return v
        if any(v is b for b in self.env.values()):  # an alias: y = x
            self.release(v)
            v = L(v.terms, v.const, v.shape, 1, target)
            self.retain(v)
        v.hint = target
        self.set_uses(v, uses)
        return v

    def finish(self) -> list[tuple[str, str]]:
        """New slot values, then ``w <- w - update``; returns (slot, list name) replaced."""
        p = self.program
        self.out.begin("the new state, then w <- w - update")
        values = [self.expr(e) for e in p.returns]
        update, slot_values = values[0], values[1:]
        finals: list[tuple[str, ListVar | str]] = []
        for s, v in zip(p.slots, slot_values, strict=True):
            self.release(v)
            name = self.py[s]
            if isinstance(v, F):
                shape = "(1, 1)" if self.matrix else "()"
                x, c = self.loop[0], self.coef(v.expr)
                code = f"[{x}.new_full({shape}, {c}) for {x} in {self.py['w']}]"
                tensor = (f"[torch.as_tensor({c}, dtype={x}.dtype, device={x}.device)"
                          f".reshape({shape}).clone() for {x} in {self.py['w']}]")
                finals.append((s, self.new_list(name, SCALAR, code, tensor=tensor).name))
                continue
            if isinstance(v, T):
                code = f"[{v.name}.clone() for _ in {self.py['w']}]"
                finals.append((s, self.new_list(name, SCALAR, code).name))
                continue
            occ = Counter(v.refs())
            x, _ = self.materialise(v, occ, hint=name)
            finals.append((s, x))
            self.stored.add(x)
            self.pending[x] += 1  # stored: nothing may overwrite it any more
        replaced: list[tuple[str, str]] = []
        kept = {s for s, x in finals if isinstance(x, ListVar) and x.slot == s}
        seen: set[ListVar] = set()
        for s, x in finals:
            if isinstance(x, str):
                replaced.append((s, x))
                continue
            if x.slot == s:
                seen.add(x)
                continue
            alias = (not x.owned or x in seen or (x.slot is not None and x.slot in kept)
                     or x is self.w)
            if alias:
                name = self.new_list(self.py[s], x.shape, f"[{self.loop[0]}.clone() for "
                                     f"{self.loop[0]} in {x.name}]").name
            else:
                name = x.name
            seen.add(x)
            replaced.append((s, name))
        self.release(update)
        self.apply_update(update)
        self.out.end()
        return replaced

    def apply_update(self, u: Value) -> None:
        """``w <- w - u`` in place: ``w (1 - c_w) - sum(c * atom) - const``."""
        w = self.w
        if isinstance(u, F):
            self.out.line(f"torch._foreach_add_({w.name}, {negate(self.coef(u.expr))})")
            return
        lu = self.lin(u)
        occ = Counter(lu.refs())  # a list read by two terms is not overwritten by one
        cw: Expr | None = None
        terms = []
        for c, atom in lu.terms:
            if atom.kind == "ref" and atom.a is w:
                cw = s_add(cw, c)
            elif w in (atom.a, atom.b):  # reads w: written out before w changes
                x = self._term_list(ONE, atom, occ, "tmp", atom.shape)
                terms.append((c, Atom("ref", x)))
            else:
                terms.append((c, atom))
        if cw is not None:
            self.out.line(f"torch._foreach_mul_({w.name}, {self.coef(s_sub(ONE, cw))})")
        for c, atom in terms:
            self._accumulate(w, s_neg(c), atom)
        if lu.const is not None:
            self.out.line(f"torch._foreach_sub_({w.name}, {self.coef(lu.const)})")

    def result(self, replaced: list[tuple[str, str]]) -> Lowered:
        p = self.program
        inputs = ["w", "g"] + [n for n in ("h", "lr", "step") if n in p.params]
        lists = [self.py[n] for n in inputs if n in ("w", "g", "h")]
        lists += [self.py[s] for s in p.slots]
        floats = [self.py[n] for n in inputs if n in ("lr", "step")]
        floats += [self.py[k] for k, _ in p.hyper]
        code = "\n".join(line for line in self.out.kernel + self.out.tkernel
                         if not line.lstrip().startswith("#"))
        used = [n for n in dict.fromkeys(self.scalars)
                if re.search(rf"(?<![\w.]){n}(?!\w)", code)]
        what = "w and the state lists" if p.slots else "w"
        ret = (f"; returns the new lists of {', '.join(s for s, _ in replaced)}" if replaced
               else "")
        back = []
        if replaced:
            back.append(f"{INDENT}return {', '.join(n for _, n in replaced)}"
                        + ("," if len(replaced) == 1 else ""))
        kernels = wrap_line(f"def {self.kernels}({', '.join(lists + used)}):")
        kernels += _doc(f"The tensor work of one {p.name} step, on lists of tensors (one per "
                        f"parameter) and Python floats: updates {what} in place{ret}.")
        kernels += self.out.kernel + back
        tkernels = wrap_line(f"def {self.tkernels}({', '.join(lists + used)}):")
        tkernels += _doc(f"{self.kernels} with its floats as 0-d tensors, for torch.compile "
                         "(which would compile anew for every new float value).")
        tkernels += self.out.tkernel + back
        update = wrap_line(f"def {self.function}({', '.join(lists + floats)}, "
                           f"{self.kernel_arg}={self.kernels}):")
        update += _doc(f"One {p.name} step: the uniform scalars as Python floats, then "
                       f"``{self.kernel_arg}`` ({self.kernels}) on the "
                       "tensors.")
        update += self.out.scalar
        update += wrap_line(f"{INDENT}return {self.kernel_arg}({', '.join(lists + used)})")
        del tkernels  # (torch.compile's form: no longer in the file, see docs/COMPILE.md)
        source = "\n\n\n".join("\n".join(f) for f in (kernels, update)) + "\n"
        return Lowered(source, self.function, self.kernels, self.tkernels, inputs,
                       list(p.slots),
                       [k for k, _ in p.hyper], [s for s, _ in replaced],
                       dict(self.typing.slot_shapes), self.matrix, "h" in p.params, p,
                       self.kernel_arg)


def _doc(text: str) -> list[str]:
    """A function docstring, wrapped to the line length."""
    lines = textwrap.wrap(f'"""{text}', LINE - len(INDENT))
    if len(lines[-1]) + 3 + len(INDENT) <= LINE:
        lines[-1] += '"""'
    else:
        lines.append('"""')
    return [INDENT + line for line in lines]


def _atom(py: Py) -> str:
    return py.text if py.prec >= ATOM else f"({py.text})"
