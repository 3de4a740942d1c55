"""The op registry: every function a program may call.

An op is one :class:`Op` entry: name, arity, family, shape rule, torch
implementation, optional multi-tensor (``torch._foreach_*``) and pure-float
implementations, sympy form and cost. Four families:

* ``elementwise``: NumPy broadcasting on the 2-D view.
* ``reduction``: one number per tensor (per replica), broadcast back as ``1 x 1``.
* ``matrix``: ops on the 2-D view of each tensor (row/column statistics,
  transpose, matmul, Newton-Schulz orthogonalisation).
* ``global``: one number across all parameters of a group, broadcast back.

Torch implementations see every tensor as a batched 2-D view ``(K, R, C)``,
where ``K`` is the replica axis (1 outside batched training); reductions keep
the replica axis, so a per-tensor norm is ``(K, 1, 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp
import torch

from . import pyform as pf
from .helpers import (
    _clip,
    _cos,
    _div,
    _exp,
    _expm1,
    _log,
    _log1p,
    _maximum,
    _minimum,
    _mod,
    _orthogonalize,
    _pow,
    _rsqrt,
    _sigmoid,
    _sign,
    _sin,
    _sqrt,
)
from .shapes import SCALAR, Shape, ShapeClash, broadcast, show

Tensor = torch.Tensor
REDUCE = (-2, -1)  # the 2-D view's axes; axis 0 is the replica axis


@dataclass(frozen=True)
class Op:
    """One entry of the registry.

    ``fn`` takes tensors (already broadcastable; floats arrive as 0-d tensors)
    and returns a tensor. ``global`` ops take one list of tensors instead.
    ``foreach`` (optional) takes lists of tensors or Python floats and returns
    a list; ``scalar`` (optional) takes and returns Python floats.

    Print forms (what :mod:`optforge.export` writes): ``py`` builds the Python
    source of ``scalar`` from its operands' sources (:mod:`optforge.lang.pyform`);
    ``each`` is a torch expression on single tensors ``{a}``, ``{b}``, ``{c}``
    (``{dims}``, ``{dims_}``, ``{dims_k}``, ``{scalar_shape}``: the axes reductions
    reduce; ``{x}``: a loop variable of a global op over the list ``{a}``); the
    operands in ``tensor_args`` must be tensors there.
    """

    name: str
    arity: int
    family: str
    fn: Callable
    sym: Callable
    doc: str
    shape_rule: Callable[..., Shape] | None = None
    foreach: Callable | None = None
    scalar: Callable | None = None
    commutative: bool = False
    infix: str | None = None
    cost: float = 1.0
    tags: frozenset[str] = field(default_factory=frozenset)
    py: Callable[..., pf.Py] | None = None
    each: str = ""
    tensor_args: frozenset[int] = frozenset()

    def shape(self, *shapes: Shape) -> Shape:
        """Result shape of this op for the given argument shapes."""
        if self.shape_rule is not None:
            return self.shape_rule(*shapes)
        if self.family == "elementwise":
            return broadcast(*shapes)
        return SCALAR  # reductions and global reductions

    def uniform(self, *uniform: bool) -> bool:
        """Whether the result is the same for every parameter."""
        return self.family == "global" or all(uniform)


REGISTRY: dict[str, Op] = {}


def register(name: str, arity: int, family: str, fn, sym, doc: str, **kw) -> Op:
    op = Op(name, arity, family, fn, sym, doc, **kw)
    if name in REGISTRY:
        raise ValueError(f"op {name!r} registered twice")
    REGISTRY[name] = op
    return op


def get(name: str) -> Op | None:
    return REGISTRY.get(name)


# ----------------------------------------------------------------- helpers


def _is_list(x) -> bool:
    return isinstance(x, list | tuple)


def _fe_commutative(fe):
    """foreach for a commutative binary op: put the list first."""

    def run(a, b):
        return fe(a, b) if _is_list(a) else fe(b, a)

    return run


def _fe_sub(a, b):
    if _is_list(a):
        return torch._foreach_sub(a, b)
    out = torch._foreach_neg(b)
    torch._foreach_add_(out, a)
    return out


def _fe_div(a, b):
    if _is_list(a):
        return torch._foreach_div(a, b)
    out = torch._foreach_reciprocal(b)
    torch._foreach_mul_(out, a)
    return out


def _fe_pow(a, b):
    return torch._foreach_pow(a, b)


def _fe_maximum(a, b):
    if _is_list(a) and _is_list(b):
        return torch._foreach_maximum(a, b)
    lst, other = (a, b) if _is_list(a) else (b, a)
    return torch._foreach_clamp_min(lst, other)


def _fe_minimum(a, b):
    if _is_list(a) and _is_list(b):
        return torch._foreach_minimum(a, b)
    lst, other = (a, b) if _is_list(a) else (b, a)
    return torch._foreach_clamp_max(lst, other)


def _fe_interp(a, b, t):
    """``(1 - t) a + t b``; torch's lerp when both ends are lists."""
    if _is_list(a) and _is_list(b) and not _is_list(t):
        return torch._foreach_lerp(a, b, t)
    if _is_list(a) and _is_list(b):
        return torch._foreach_lerp(a, b, t)
    return None  # fall back to per-tensor evaluation


def _fe_unary(name: str):
    fe = getattr(torch, f"_foreach_{name}")

    def run(a):
        return fe(a)

    return run


def _fe_square(a):
    return torch._foreach_mul(a, a)


def _fe_clip(x, c):
    if _is_list(c):
        return None
    out = torch._foreach_clamp_min(x, -c)
    torch._foreach_clamp_max_(out, c)
    return out


# --------------------------------------------------------- element-wise ops

E = "elementwise"
S = sp

register("add", 2, E, torch.add, lambda a, b: a + b, "a + b",
         foreach=_fe_commutative(torch._foreach_add), scalar=lambda a, b: a + b,
         commutative=True, infix="+",
         py=pf.infix("+", pf.ADD), each="{a} + {b}")
register("sub", 2, E, torch.sub, lambda a, b: a - b, "a - b",
         foreach=_fe_sub, scalar=lambda a, b: a - b, infix="-",
         py=pf.infix("-", pf.ADD), each="{a} - {b}")
register("mul", 2, E, torch.mul, lambda a, b: a * b, "a * b",
         foreach=_fe_commutative(torch._foreach_mul), scalar=lambda a, b: a * b,
         commutative=True, infix="*",
         py=pf.infix("*", pf.MUL), each="{a} * {b}")
register("div", 2, E, torch.div, lambda a, b: a / b, "a / b",
         foreach=_fe_div, scalar=_div, infix="/",
         py=pf.div, each="{a} / {b}")
register("pow", 2, E, torch.pow, lambda a, b: a**b, "a ** b",
         foreach=_fe_pow, scalar=_pow, infix="**", cost=2.0,
         py=pf.call("_pow"), each="{a} ** {b}")
register("neg", 1, E, torch.neg, lambda a: -a, "-a",
         foreach=_fe_unary("neg"), scalar=lambda a: -a, infix="-",
         py=pf.negate, each="-{a}")
register("sign", 1, E, torch.sign, S.sign, "sign(a) in {-1, 0, 1}",
         foreach=_fe_unary("sign"), scalar=_sign,
         py=pf.call("_sign"), each="torch.sign({a})")
register("abs", 1, E, torch.abs, S.Abs, "|a|", foreach=_fe_unary("abs"), scalar=abs,
         py=pf.call("abs"), each="torch.abs({a})")
register("sqrt", 1, E, torch.sqrt, S.sqrt, "sqrt(a)",
         foreach=_fe_unary("sqrt"), scalar=_sqrt,
         py=pf.call("_sqrt"), each="torch.sqrt({a})")
register("rsqrt", 1, E, torch.rsqrt, lambda a: 1 / S.sqrt(a), "1 / sqrt(a)",
         foreach=None,
         scalar=_rsqrt,
         py=pf.call("_rsqrt"), each="torch.rsqrt({a})")
register("square", 1, E, torch.square, lambda a: a**2, "a^2",
         foreach=_fe_square, scalar=lambda a: a * a,
         py=pf.square, each="torch.square({a})", tensor_args=frozenset({0}))
register("reciprocal", 1, E, torch.reciprocal, lambda a: 1 / a, "1 / a",
         foreach=_fe_unary("reciprocal"), scalar=lambda a: _div(1.0, a),
         py=pf.reciprocal, each="torch.reciprocal({a})")
register("exp", 1, E, torch.exp, S.exp, "e^a", foreach=_fe_unary("exp"),
         scalar=_exp, cost=2.0,
         py=pf.call("_exp"), each="torch.exp({a})")
register("log", 1, E, torch.log, S.log, "natural log", foreach=_fe_unary("log"),
         scalar=_log,
         cost=2.0,
         py=pf.call("_log"), each="torch.log({a})")
register("log1p", 1, E, torch.log1p, lambda a: S.log(1 + a), "log(1 + a)",
         foreach=_fe_unary("log1p"),
         scalar=_log1p, cost=2.0,
         py=pf.call("_log1p"), each="torch.log1p({a})")
register("expm1", 1, E, torch.expm1, lambda a: S.exp(a) - 1, "e^a - 1",
         foreach=_fe_unary("expm1"), scalar=_expm1, cost=2.0,
         py=pf.call("_expm1"), each="torch.expm1({a})")
register("tanh", 1, E, torch.tanh, S.tanh, "tanh(a)", foreach=_fe_unary("tanh"),
         scalar=math.tanh, cost=2.0,
         py=pf.call("math.tanh"), each="torch.tanh({a})")
register("sigmoid", 1, E, torch.sigmoid, lambda a: 1 / (1 + S.exp(-a)), "1 / (1 + e^-a)",
         foreach=_fe_unary("sigmoid"), scalar=_sigmoid, cost=2.0,
         py=pf.call("_sigmoid"), each="torch.sigmoid({a})")
register("softsign", 1, E, torch.nn.functional.softsign, lambda a: a / (1 + S.Abs(a)),
         "a / (1 + |a|)", scalar=lambda a: a / (1 + abs(a)),
         py=pf.softsign, each="torch.nn.functional.softsign({a})")
register("relu", 1, E, torch.relu, lambda a: S.Max(a, 0), "max(a, 0)",
         scalar=lambda a: max(a, 0.0),
         py=pf.relu, each="torch.relu({a})")
register("sin", 1, E, torch.sin, S.sin, "sin(a)", foreach=_fe_unary("sin"),
         scalar=_sin, cost=2.0,
         py=pf.call("_sin"), each="torch.sin({a})")
register("cos", 1, E, torch.cos, S.cos, "cos(a)", foreach=_fe_unary("cos"),
         scalar=_cos, cost=2.0,
         py=pf.call("_cos"), each="torch.cos({a})")
register("atan", 1, E, torch.atan, S.atan, "arctan(a)", foreach=_fe_unary("atan"),
         scalar=math.atan, cost=2.0,
         py=pf.call("math.atan"), each="torch.atan({a})")
register("erf", 1, E, torch.erf, S.erf, "error function", foreach=_fe_unary("erf"),
         scalar=math.erf, cost=2.0,
         py=pf.call("math.erf"), each="torch.erf({a})")
register("maximum", 2, E, torch.maximum, S.Max, "max(a, b)", foreach=_fe_maximum,
         scalar=_maximum, commutative=True,
         py=pf.call("_maximum"), each="torch.maximum({a}, {b})", tensor_args=frozenset({0, 1}))
register("minimum", 2, E, torch.minimum, S.Min, "min(a, b)", foreach=_fe_minimum,
         scalar=_minimum, commutative=True,
         py=pf.call("_minimum"), each="torch.minimum({a}, {b})", tensor_args=frozenset({0, 1}))
register("clip", 2, E, lambda x, c: torch.clamp(x, -c, c),
         lambda x, c: S.Max(-c, S.Min(x, c)), "clamp(a, -c, c)", foreach=_fe_clip,
         scalar=_clip,
         py=pf.call("_clip"), each="torch.clamp({a}, -{b}, {b})", tensor_args=frozenset({0}))
register("interp", 3, E, lambda a, b, t: a + t * (b - a), lambda a, b, t: a + t * (b - a),
         "(1 - t) a + t b, the exponential moving average step", foreach=_fe_interp,
         scalar=lambda a, b, t: a + t * (b - a),
         py=pf.interp, each="{a} + {c} * ({b} - {a})")
register("where", 3, E, lambda c, a, b: torch.where(c > 0, a, b),
         lambda c, a, b: S.Piecewise((a, c > 0), (b, True)), "a where c > 0 else b",
         scalar=lambda c, a, b: a if c > 0 else b,
         py=pf.where, each="torch.where({a} > 0, {b}, {c})", tensor_args=frozenset({0, 1}))
register("gt", 2, E, lambda a, b: (a > b).to(torch.promote_types(a.dtype, b.dtype)),
         lambda a, b: S.Heaviside(a - b, 0), "1 where a > b else 0",
         scalar=lambda a, b: float(a > b), infix=">",
         py=pf.compare(">"), each="({a} > {b}).to({a}.dtype)", tensor_args=frozenset({0}))
register("lt", 2, E, lambda a, b: (a < b).to(torch.promote_types(a.dtype, b.dtype)),
         lambda a, b: S.Heaviside(b - a, 0), "1 where a < b else 0",
         scalar=lambda a, b: float(a < b), infix="<",
         py=pf.compare("<"), each="({a} < {b}).to({a}.dtype)", tensor_args=frozenset({0}))
register("mod", 2, E, torch.remainder, lambda a, b: S.nan if b == 0 else S.Mod(a, b),
         "a mod b, the remainder with the sign of b (Python's %); periodic schedules on step",
         scalar=_mod,
         py=pf.call("_mod"), each="torch.remainder({a}, {b})", tensor_args=frozenset({0}))


# ------------------------------------------------------- per-tensor reductions

Rd = "reduction"
_f = sp.Function


def _norm(x: Tensor) -> Tensor:
    return torch.linalg.vector_norm(x, dim=REDUCE, keepdim=True)


def _rms(x: Tensor) -> Tensor:
    return x.square().mean(dim=REDUCE, keepdim=True).sqrt()


register("norm", 1, Rd, _norm, _f("norm"), "Frobenius norm of the tensor", cost=2.0,
         each="torch.linalg.vector_norm({a}{dims_k})")
register("rms", 1, Rd, _rms, _f("rms"), "root mean square of the tensor", cost=2.0,
         each="{a}.square().mean({dims}).sqrt()")
register("mean", 1, Rd, lambda x: x.mean(dim=REDUCE, keepdim=True), _f("mean"),
         "mean of the tensor",
         each="{a}.mean({dims})")
register("sum", 1, Rd, lambda x: x.sum(dim=REDUCE, keepdim=True), _f("sum"),
         "sum of the tensor",
         each="{a}.sum({dims})")
register("max_abs", 1, Rd, lambda x: x.abs().amax(dim=REDUCE, keepdim=True), _f("max_abs"),
         "largest absolute entry of the tensor",
         each="{a}.abs().amax({dims})")
register("std", 1, Rd, lambda x: x.std(dim=REDUCE, keepdim=True, correction=0), _f("std"),
         "population standard deviation of the tensor", cost=2.0,
         each="{a}.std({dims_}correction=0)")
register("numel", 1, Rd,
         lambda x: torch.full((x.shape[0], 1, 1), x.shape[-1] * x.shape[-2], dtype=x.dtype,
                              device=x.device),
         _f("numel"), "number of entries of the tensor (per replica)", cost=0.1,
         each="{a}.new_full({scalar_shape}, {a}.numel())")


# ---------------------------------------------------------------- matrix ops

M = "matrix"


def _rule_row(a: Shape) -> Shape:
    return (a[0], 1)


def _rule_col(a: Shape) -> Shape:
    return (1, a[1])


def _rule_transpose(a: Shape) -> Shape:
    return (a[1], a[0])


def _rule_matmul(a: Shape, b: Shape) -> Shape:
    if a[1] != b[0]:
        raise ShapeClash(f"matmul of {show(a)} by {show(b)}: inner dimensions differ")
    return (a[0], b[1])


def _rule_same(a: Shape) -> Shape:
    return a


orthogonalize = _orthogonalize  # one source: exported files copy it


register("row_mean", 1, M, lambda x: x.mean(dim=-1, keepdim=True), _f("row_mean"),
         "mean over each row of the 2-D view (R x 1)", shape_rule=_rule_row,
         each="{a}.mean(dim=-1, keepdim=True)")
register("col_mean", 1, M, lambda x: x.mean(dim=-2, keepdim=True), _f("col_mean"),
         "mean over each column of the 2-D view (1 x C)", shape_rule=_rule_col,
         each="{a}.mean(dim=-2, keepdim=True)")
register("row_norm", 1, M, lambda x: torch.linalg.vector_norm(x, dim=-1, keepdim=True),
         _f("row_norm"), "L2 norm of each row of the 2-D view (R x 1)", shape_rule=_rule_row,
         each="torch.linalg.vector_norm({a}, dim=-1, keepdim=True)")
register("col_norm", 1, M, lambda x: torch.linalg.vector_norm(x, dim=-2, keepdim=True),
         _f("col_norm"), "L2 norm of each column of the 2-D view (1 x C)",
         shape_rule=_rule_col,
         each="torch.linalg.vector_norm({a}, dim=-2, keepdim=True)")
register("transpose", 1, M, lambda x: x.mT, lambda a: S.Function("transpose")(a),
         "transpose of the 2-D view", shape_rule=_rule_transpose, cost=0.5,
         each="{a}.mT")
register("matmul", 2, M, torch.matmul, lambda a, b: S.Function("matmul")(a, b),
         "matrix product of 2-D views", shape_rule=_rule_matmul, cost=4.0,
         each="{a} @ {b}", tensor_args=frozenset({0, 1}))
register("orthogonalize", 1, M, orthogonalize, _f("orth"),
         "Newton-Schulz orthogonalisation of the 2-D view (Muon)", shape_rule=_rule_same,
         cost=20.0,
         each="_orthogonalize({a})")

# ---------------------------------------------------------------- global ops

G = "global"


def _global_sum(xs: list[Tensor], f) -> Tensor:
    return torch.stack([f(x).sum(dim=REDUCE, keepdim=True) for x in xs]).sum(0)


def _global_numel(xs: list[Tensor]) -> int:
    return sum(x.shape[-1] * x.shape[-2] for x in xs)


register("global_norm", 1, G, lambda xs: _global_sum(xs, torch.square).sqrt(),
         _f("global_norm"), "L2 norm over all parameters of the group", cost=2.0,
         each="torch.stack([{x}.square().sum({dims}) for {x} in {a}]).sum(0).sqrt()")
register("global_rms", 1, G,
         lambda xs: (_global_sum(xs, torch.square) / _global_numel(xs)).sqrt(),
         _f("global_rms"), "root mean square over all parameters of the group", cost=2.0,
         each="(torch.stack([{x}.square().sum({dims}) for {x} in {a}]).sum(0)"
              " / sum({x}.numel() for {x} in {a})).sqrt()")
register("global_mean", 1, G, lambda xs: _global_sum(xs, lambda x: x) / _global_numel(xs),
         _f("global_mean"), "mean over all parameters of the group", cost=2.0,
         each="torch.stack([{x}.sum({dims}) for {x} in {a}]).sum(0)"
              " / sum({x}.numel() for {x} in {a})")
register("global_max_abs", 1, G,
         lambda xs: torch.stack([x.abs().amax(dim=REDUCE, keepdim=True) for x in xs]).amax(0),
         _f("global_max_abs"), "largest absolute entry over all parameters", cost=2.0,
         each="torch.stack([{x}.abs().amax({dims}) for {x} in {a}]).amax(0)")

FAMILIES = ("elementwise", "reduction", "matrix", "global")
INFIX_BINARY = {op.infix: op.name for op in REGISTRY.values() if op.infix and op.arity == 2}
