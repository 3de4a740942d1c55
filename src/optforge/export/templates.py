"""How the exported file writes each op: one template per op of the registry.

The generated step works on three kinds of value (see :mod:`optforge.export.lower`):
Python floats (uniform scalars: constants, hyperparameters, ``lr``, ``step``),
uniform tensors (global reductions) and lists with one tensor per parameter. A
:class:`Template` gives an op's form for each:

* ``scalar``: a Python float expression, used when every operand is a float. It
  follows the runtime's ``Op.scalar`` exactly: division, powers and the functions
  whose Python form raises where torch returns ``inf`` or NaN call the small
  helpers of :data:`HELPERS` (``_div``, ``_pow``, ...), copied into the file when used.
* ``each``: a torch expression on single tensors (``{a}``, ``{b}``, ``{c}`` are the
  operands), used in a list comprehension over the parameters and for uniform
  tensors. Operands listed in ``tensor_args`` must be tensors (a float there is
  turned into a 0-d tensor of the parameters' dtype, as the runtime does).
  Reductions write ``{dims}`` / ``{dims_}`` for the axes they reduce: all of them,
  or the 2-D view's ``dim=(-2, -1), keepdim=True`` when the program has matrix ops.
* ``foreach``: multi-tensor kernels (``torch._foreach_*``) by operand kinds (``L`` a
  list, ``F`` a float), as ``(kernel, args)`` steps: the first runs out of place or,
  when its first operand may be overwritten, in place; the others run in place on
  its result. ``{neg_b}`` is ``-b``.

``linear`` ops (``add sub mul div neg square interp``) are lowered by the
linear-combination algebra of :mod:`optforge.export.lower` into fused kernels
(``_foreach_add_(x, y, alpha=c)``, ``addcmul_``, ``addcdiv_``, ``lerp_``); their
``scalar`` and ``each`` forms still serve floats and uniform tensors.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

# ----------------------------------------------------------- Python expressions

COND, CMP, ADD, MUL, UNARY, POW, ATOM = 1, 5, 10, 11, 12, 13, 20


@dataclass(frozen=True)
class Py:
    """A Python expression: its text, the precedence of its outermost operator and,
    for a number, its value."""

    text: str
    prec: int = ATOM
    value: float | None = None

    def __str__(self) -> str:
        return self.text


def wrap(x: Py, prec: int) -> str:
    """``x`` as an operand of an operator of precedence ``prec`` (parenthesised if needed)."""
    return f"({x.text})" if x.prec < prec else x.text


def atom(x: Py) -> str:
    return wrap(x, ATOM)


def negate(x: Py) -> Py:
    if x.value is not None and x.value < 0:
        return number(-x.value)
    if x.text.startswith("-") and x.prec == UNARY:
        inner = x.text[1:]
        return Py(inner, ATOM if re.fullmatch(r"[\w.]+|\(.*\)", inner) else UNARY)
    return Py(f"-{wrap(x, UNARY)}", UNARY)


def number(value: float) -> Py:
    """A numeric literal: integers without ``.0``, floats by their shortest repr."""
    text = str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(float(value))
    return Py(text, UNARY if value < 0 or text.startswith("-") else ATOM, float(value))


def _infix(op: str, prec: int) -> Callable[[Py, Py], Py]:
    def build(a: Py, b: Py) -> Py:
        return Py(f"{wrap(a, prec)} {op} {wrap(b, prec + 1)}", prec)

    return build


def _call(name: str) -> Callable[..., Py]:
    def build(*args: Py) -> Py:
        return Py(f"{name}({', '.join(a.text for a in args)})")

    return build


def _div(a: Py, b: Py) -> Py:
    """Plain ``/`` by a nonzero literal, else the IEEE helper."""
    if b.value is not None and b.value != 0:
        return _infix("/", MUL)(a, b)
    return _call("_div")(a, b)


def _square(a: Py) -> Py:
    return Py(f"{wrap(a, MUL + 1)} * {wrap(a, MUL + 1)}", MUL)


def _interp(a: Py, b: Py, t: Py) -> Py:
    return Py(f"{wrap(a, ADD)} + {wrap(t, MUL)} * ({b.text} - {wrap(a, ADD + 1)})", ADD)


def _where(c: Py, a: Py, b: Py) -> Py:
    return Py(f"{wrap(a, COND + 1)} if {wrap(c, CMP + 1)} > 0 else {wrap(b, COND)}", COND)


def _compare(op: str) -> Callable[[Py, Py], Py]:
    def build(a: Py, b: Py) -> Py:
        return Py(f"float({wrap(a, CMP + 1)} {op} {wrap(b, CMP + 1)})")

    return build


def _softsign(a: Py) -> Py:  # 1 + |a| >= 1 (or NaN): plain division is safe
    return Py(f"{wrap(a, MUL)} / (1 + abs({a.text}))", MUL)


# ------------------------------------------------------------------ templates


@dataclass(frozen=True)
class Template:
    """The forms of one op in generated code (see the module docstring)."""

    scalar: Callable[..., Py] | None
    each: str
    foreach: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    tensor_args: frozenset[int] = frozenset()
    linear: bool = False
    view: bool = False  # ``each`` returns a view of its operand (never written in place)


def _fe(kernel: str, args: str = "{a}") -> tuple[tuple[str, str], ...]:
    return ((kernel, args),)


def _unary(torch_name: str, scalar: Callable[..., Py], kernel: str | None = None) -> Template:
    fe = {"L": _fe(kernel)} if kernel else {}
    return Template(scalar, f"torch.{torch_name}({{a}})", fe)


_DIMS = "{dims}"
_ALL = frozenset({0})

TEMPLATES: dict[str, Template] = {
    # element-wise: the linear ones (lowered by the algebra of lower.py)
    "add": Template(_infix("+", ADD), "{a} + {b}", linear=True),
    "sub": Template(_infix("-", ADD), "{a} - {b}", linear=True),
    "mul": Template(_infix("*", MUL), "{a} * {b}", linear=True),
    "div": Template(_div, "{a} / {b}", linear=True),
    "neg": Template(negate, "-{a}", linear=True),
    "square": Template(_square, "torch.square({a})", tensor_args=_ALL, linear=True),
    "interp": Template(_interp, "{a} + {c} * ({b} - {a})",
                       {"LLF": _fe("lerp", "{a}, {b}, {c}"), "LLL": _fe("lerp", "{a}, {b}, {c}")},
                       linear=True),
    # element-wise, the others
    "pow": Template(_call("_pow"), "{a} ** {b}",
                    {"LL": _fe("pow", "{a}, {b}"), "LF": _fe("pow", "{a}, {b}"),
                     "FL": _fe("pow", "{a}, {b}")}),
    "sign": _unary("sign", _call("_sign"), "sign"),
    "abs": _unary("abs", _call("abs"), "abs"),
    "sqrt": _unary("sqrt", _call("_sqrt"), "sqrt"),
    "rsqrt": _unary("rsqrt", _call("_rsqrt"), "rsqrt"),
    "reciprocal": _unary("reciprocal", lambda a: _call("_div")(number(1), a), "reciprocal"),
    "exp": _unary("exp", _call("_exp"), "exp"),
    "log": _unary("log", _call("_log"), "log"),
    "log1p": _unary("log1p", _call("_log1p"), "log1p"),
    "expm1": _unary("expm1", _call("_expm1"), "expm1"),
    "tanh": _unary("tanh", _call("math.tanh"), "tanh"),
    "sigmoid": _unary("sigmoid", _call("_sigmoid"), "sigmoid"),
    "softsign": Template(_softsign, "torch.nn.functional.softsign({a})"),
    "relu": Template(lambda a: _call("max")(a, Py("0.0", ATOM, 0.0)), "torch.relu({a})"),
    "sin": _unary("sin", _call("_sin"), "sin"),
    "cos": _unary("cos", _call("_cos"), "cos"),
    "atan": _unary("atan", _call("math.atan"), "atan"),
    "erf": _unary("erf", _call("math.erf"), "erf"),
    "maximum": Template(_call("_maximum"), "torch.maximum({a}, {b})",
                        {"LL": _fe("maximum", "{a}, {b}"), "LF": _fe("clamp_min", "{a}, {b}"),
                         "FL": _fe("clamp_min", "{b}, {a}")}, frozenset({0, 1})),
    "minimum": Template(_call("_minimum"), "torch.minimum({a}, {b})",
                        {"LL": _fe("minimum", "{a}, {b}"), "LF": _fe("clamp_max", "{a}, {b}"),
                         "FL": _fe("clamp_max", "{b}, {a}")}, frozenset({0, 1})),
    "clip": Template(_call("_clip"), "torch.clamp({a}, -{b}, {b})",
                     {"LF": (("clamp_min", "{a}, {neg_b}"), ("clamp_max", "{b}"))}, _ALL),
    "where": Template(_where, "torch.where({a} > 0, {b}, {c})", tensor_args=frozenset({0, 1})),
    "gt": Template(_compare(">"), "({a} > {b}).to({a}.dtype)", tensor_args=_ALL),
    "lt": Template(_compare("<"), "({a} < {b}).to({a}.dtype)", tensor_args=_ALL),
    "mod": Template(_call("_mod"), "torch.remainder({a}, {b})", tensor_args=_ALL),
    # per-tensor reductions: one number per parameter
    "norm": Template(None, "torch.linalg.vector_norm({a}{dims_k})"),
    "rms": Template(None, "{a}.square().mean(" + _DIMS + ").sqrt()"),
    "mean": Template(None, "{a}.mean(" + _DIMS + ")"),
    "sum": Template(None, "{a}.sum(" + _DIMS + ")"),
    "max_abs": Template(None, "{a}.abs().amax(" + _DIMS + ")"),
    "std": Template(None, "{a}.std({dims_}correction=0)"),
    "numel": Template(None, "{a}.new_full({scalar_shape}, {a}.numel())"),
    # matrix ops on the 2-D view R x C
    "row_mean": Template(None, "{a}.mean(dim=-1, keepdim=True)"),
    "col_mean": Template(None, "{a}.mean(dim=-2, keepdim=True)"),
    "row_norm": Template(None, "torch.linalg.vector_norm({a}, dim=-1, keepdim=True)"),
    "col_norm": Template(None, "torch.linalg.vector_norm({a}, dim=-2, keepdim=True)"),
    "transpose": Template(None, "{a}.mT", view=True),
    "matmul": Template(None, "{a} @ {b}", tensor_args=frozenset({0, 1})),
    "orthogonalize": Template(None, "_orthogonalize({a})"),
    # global reductions over all parameters of a group ({x} is a loop variable)
    "global_norm": Template(
        None, "torch.stack([{x}.square().sum(" + _DIMS + ") for {x} in {a}]).sum(0).sqrt()"),
    "global_rms": Template(
        None, "(torch.stack([{x}.square().sum(" + _DIMS + ") for {x} in {a}]).sum(0)"
        " / sum({x}.numel() for {x} in {a})).sqrt()"),
    "global_mean": Template(
        None, "torch.stack([{x}.sum(" + _DIMS + ") for {x} in {a}]).sum(0)"
        " / sum({x}.numel() for {x} in {a})"),
    "global_max_abs": Template(
        None, "torch.stack([{x}.abs().amax(" + _DIMS + ") for {x} in {a}]).amax(0)"),
}


def dims(matrix: bool) -> dict[str, str]:
    """Placeholders of the reduction templates: reduce every axis to a 0-d tensor, or
    (programs with matrix ops) the 2-D view's two axes to a 1 x 1 tensor."""
    if matrix:
        kw = "dim=(-2, -1), keepdim=True"
        return {"dims": kw, "dims_": kw + ", ", "dims_k": ", " + kw, "scalar_shape": "(1, 1)"}
    return {"dims": "", "dims_": "", "dims_k": "", "scalar_shape": "()"}


# ------------------------------------------------------------------- helpers

HELPERS: dict[str, str] = {
    "_div": '''
def _div(a, b):
    """a / b in IEEE arithmetic: a signed infinity or NaN where Python raises."""
    if b == 0:
        if a == 0 or a != a:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b
''',
    "_pow": '''
def _pow(a, b):
    """a ** b with torch's infinities where Python raises, NaN for a complex result."""
    try:
        r = a**b
    except (ZeroDivisionError, OverflowError):
        odd = math.isfinite(b) and b == int(b) and int(b) % 2 == 1
        return -math.inf if math.copysign(1.0, a) < 0 and odd else math.inf
    return math.nan if isinstance(r, complex) else r
''',
    "_sign": '''
def _sign(a):
    """-1, 0 or 1 (0 for NaN, as torch.sign)."""
    return float((a > 0) - (a < 0))
''',
    "_sqrt": '''
def _sqrt(a):
    """sqrt(a); NaN below zero."""
    try:
        return math.sqrt(a)
    except ValueError:
        return math.nan
''',
    "_rsqrt": '''
def _rsqrt(a):
    """1 / sqrt(a): a signed infinity at zero, NaN below zero."""
    if a == 0:
        return math.copysign(math.inf, a)
    try:
        return 1 / math.sqrt(a)
    except ValueError:
        return math.nan
''',
    "_exp": '''
def _exp(a):
    """e^a; inf on overflow."""
    try:
        return math.exp(a)
    except OverflowError:
        return math.inf
''',
    "_expm1": '''
def _expm1(a):
    """e^a - 1; inf on overflow."""
    try:
        return math.expm1(a)
    except OverflowError:
        return math.inf
''',
    "_log": '''
def _log(a):
    """Natural log: -inf at zero, NaN below zero."""
    if a > 0:
        return math.log(a)
    return -math.inf if a == 0 else math.nan
''',
    "_log1p": '''
def _log1p(a):
    """log(1 + a): -inf at -1, NaN below."""
    if a == -1:
        return -math.inf
    try:
        return math.log1p(a)
    except ValueError:
        return math.nan
''',
    "_sigmoid": '''
def _sigmoid(a):
    """1 / (1 + e^-a) without overflow."""
    if a < 0:
        e = math.exp(a)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(-a)) if a == a else math.nan
''',
    "_sin": '''
def _sin(a):
    """sin(a); NaN at infinity."""
    try:
        return math.sin(a)
    except ValueError:
        return math.nan
''',
    "_cos": '''
def _cos(a):
    """cos(a); NaN at infinity."""
    try:
        return math.cos(a)
    except ValueError:
        return math.nan
''',
    "_maximum": '''
def _maximum(a, b):
    """max(a, b), NaN if either is NaN (as torch.maximum)."""
    return math.nan if a != a or b != b else max(a, b)
''',
    "_minimum": '''
def _minimum(a, b):
    """min(a, b), NaN if either is NaN (as torch.minimum)."""
    return math.nan if a != a or b != b else min(a, b)
''',
    "_clip": '''
def _clip(a, c):
    """a clamped to [-c, c], NaN if either is NaN (as torch.clamp)."""
    return math.nan if a != a or c != c else min(max(a, -c), c)
''',
    "_mod": '''
def _mod(a, b):
    """a mod b with the sign of b (Python's %); NaN where Python raises."""
    try:
        return a % b
    except ZeroDivisionError:
        return math.nan
''',
    "_orthogonalize": '''
def _orthogonalize(x, steps=5):
    """Newton-Schulz quintic iteration towards the nearest semi-orthogonal matrix
    (Muon's coefficients), after x / max(||x||_F, 1e-7); tall matrices are transposed."""
    a, b, c = 3.4445, -4.7750, 2.0315
    tall = x.shape[-2] > x.shape[-1]
    y = x.mT if tall else x
    y = y / torch.linalg.vector_norm(y, dim=(-2, -1), keepdim=True).clamp_min(1e-7)
    for _ in range(steps):
        gram = y @ y.mT
        y = a * y + (b * gram + c * gram @ gram) @ y
    return y.mT if tall else y
''',
}


def helpers_used(code: str) -> list[str]:
    """Names of the helpers that ``code`` calls, sorted."""
    return sorted(name for name in HELPERS if re.search(rf"(?<![\w.]){name}\(", code))
