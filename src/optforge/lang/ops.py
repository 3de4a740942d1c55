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


def _safe(f, overflow: float = math.nan):
    """Wrap a float function so domain errors give NaN like torch does
    (and overflow gives ``overflow``, e.g. inf for exp)."""

    def run(*args):
        try:
            return float(f(*args))
        except (ValueError, ZeroDivisionError):
            return math.nan
        except OverflowError:
            return overflow

    return run


def _sdiv(a, b):
    """IEEE division: ``a / +-0`` is a signed infinity, ``0 / 0`` NaN."""
    if b == 0:
        if a == 0 or a != a:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _odd_integer(b) -> bool:
    return b == int(b) and int(b) % 2 == 1 if math.isfinite(b) else False


def _spow(a, b):
    """``a ** b`` with torch's signed infinities on overflow and at zero."""
    try:
        r = a**b
    except (ZeroDivisionError, OverflowError):
        return -math.inf if math.copysign(1.0, a) < 0 and _odd_integer(b) else math.inf
    return r if isinstance(r, float | int) else math.nan


def _sign(x):
    return float((x > 0) - (x < 0))  # NaN -> 0, as torch.sign


def _nan_or(f):
    """A float max/min/clamp that propagates NaN like torch does."""

    def run(*args):
        return math.nan if any(a != a for a in args) else f(*args)

    return run


def _sigmoid(a):
    if a < 0:
        e = math.exp(a)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(-a)) if a == a else math.nan


# --------------------------------------------------------- element-wise ops

E = "elementwise"
S = sp

register("add", 2, E, torch.add, lambda a, b: a + b, "a + b",
         foreach=_fe_commutative(torch._foreach_add), scalar=lambda a, b: a + b,
         commutative=True, infix="+")
register("sub", 2, E, torch.sub, lambda a, b: a - b, "a - b",
         foreach=_fe_sub, scalar=lambda a, b: a - b, infix="-")
register("mul", 2, E, torch.mul, lambda a, b: a * b, "a * b",
         foreach=_fe_commutative(torch._foreach_mul), scalar=lambda a, b: a * b,
         commutative=True, infix="*")
register("div", 2, E, torch.div, lambda a, b: a / b, "a / b",
         foreach=_fe_div, scalar=_sdiv, infix="/")
register("pow", 2, E, torch.pow, lambda a, b: a**b, "a ** b",
         foreach=_fe_pow, scalar=_spow, infix="**", cost=2.0)
register("neg", 1, E, torch.neg, lambda a: -a, "-a",
         foreach=_fe_unary("neg"), scalar=lambda a: -a, infix="-")
register("sign", 1, E, torch.sign, S.sign, "sign(a) in {-1, 0, 1}",
         foreach=_fe_unary("sign"), scalar=_sign)
register("abs", 1, E, torch.abs, S.Abs, "|a|", foreach=_fe_unary("abs"), scalar=abs)
register("sqrt", 1, E, torch.sqrt, S.sqrt, "sqrt(a)",
         foreach=_fe_unary("sqrt"), scalar=_safe(math.sqrt))
register("rsqrt", 1, E, torch.rsqrt, lambda a: 1 / S.sqrt(a), "1 / sqrt(a)",
         foreach=None,
         scalar=lambda a: math.copysign(math.inf, a) if a == 0 else _safe(
             lambda x: 1 / math.sqrt(x))(a))
register("square", 1, E, torch.square, lambda a: a**2, "a^2",
         foreach=_fe_square, scalar=lambda a: a * a)
register("reciprocal", 1, E, torch.reciprocal, lambda a: 1 / a, "1 / a",
         foreach=_fe_unary("reciprocal"), scalar=lambda a: _sdiv(1.0, a))
register("exp", 1, E, torch.exp, S.exp, "e^a", foreach=_fe_unary("exp"),
         scalar=_safe(math.exp, math.inf), cost=2.0)
register("log", 1, E, torch.log, S.log, "natural log", foreach=_fe_unary("log"),
         scalar=_safe(lambda a: math.log(a) if a > 0 else (-math.inf if a == 0 else math.nan)),
         cost=2.0)
register("log1p", 1, E, torch.log1p, lambda a: S.log(1 + a), "log(1 + a)",
         foreach=_fe_unary("log1p"),
         scalar=_safe(lambda a: -math.inf if a == -1 else math.log1p(a)), cost=2.0)
register("expm1", 1, E, torch.expm1, lambda a: S.exp(a) - 1, "e^a - 1",
         foreach=_fe_unary("expm1"), scalar=_safe(math.expm1, math.inf), cost=2.0)
register("tanh", 1, E, torch.tanh, S.tanh, "tanh(a)", foreach=_fe_unary("tanh"),
         scalar=math.tanh, cost=2.0)
register("sigmoid", 1, E, torch.sigmoid, lambda a: 1 / (1 + S.exp(-a)), "1 / (1 + e^-a)",
         foreach=_fe_unary("sigmoid"), scalar=_sigmoid, cost=2.0)
register("softsign", 1, E, torch.nn.functional.softsign, lambda a: a / (1 + S.Abs(a)),
         "a / (1 + |a|)", scalar=lambda a: a / (1 + abs(a)))
register("relu", 1, E, torch.relu, lambda a: S.Max(a, 0), "max(a, 0)",
         scalar=lambda a: max(a, 0.0))
register("sin", 1, E, torch.sin, S.sin, "sin(a)", foreach=_fe_unary("sin"),
         scalar=_safe(math.sin), cost=2.0)
register("cos", 1, E, torch.cos, S.cos, "cos(a)", foreach=_fe_unary("cos"),
         scalar=_safe(math.cos), cost=2.0)
register("atan", 1, E, torch.atan, S.atan, "arctan(a)", foreach=_fe_unary("atan"),
         scalar=math.atan, cost=2.0)
register("erf", 1, E, torch.erf, S.erf, "error function", foreach=_fe_unary("erf"),
         scalar=math.erf, cost=2.0)
register("maximum", 2, E, torch.maximum, S.Max, "max(a, b)", foreach=_fe_maximum,
         scalar=_nan_or(max), commutative=True)
register("minimum", 2, E, torch.minimum, S.Min, "min(a, b)", foreach=_fe_minimum,
         scalar=_nan_or(min), commutative=True)
register("clip", 2, E, lambda x, c: torch.clamp(x, -c, c),
         lambda x, c: S.Max(-c, S.Min(x, c)), "clamp(a, -c, c)", foreach=_fe_clip,
         scalar=_nan_or(lambda x, c: min(max(x, -c), c)))  # torch.clamp(x, -c, c)
register("interp", 3, E, lambda a, b, t: a + t * (b - a), lambda a, b, t: a + t * (b - a),
         "(1 - t) a + t b, the exponential moving average step", foreach=_fe_interp,
         scalar=lambda a, b, t: a + t * (b - a))
register("where", 3, E, lambda c, a, b: torch.where(c > 0, a, b),
         lambda c, a, b: S.Piecewise((a, c > 0), (b, True)), "a where c > 0 else b",
         scalar=lambda c, a, b: a if c > 0 else b)
register("gt", 2, E, lambda a, b: (a > b).to(torch.promote_types(a.dtype, b.dtype)),
         lambda a, b: S.Heaviside(a - b, 0), "1 where a > b else 0",
         scalar=lambda a, b: float(a > b), infix=">")
register("lt", 2, E, lambda a, b: (a < b).to(torch.promote_types(a.dtype, b.dtype)),
         lambda a, b: S.Heaviside(b - a, 0), "1 where a < b else 0",
         scalar=lambda a, b: float(a < b), infix="<")
register("mod", 2, E, torch.remainder, lambda a, b: S.nan if b == 0 else S.Mod(a, b),
         "a mod b, the remainder with the sign of b (Python's %); periodic schedules on step",
         scalar=_safe(lambda a, b: a % b))


# ------------------------------------------------------- per-tensor reductions

Rd = "reduction"
_f = sp.Function


def _norm(x: Tensor) -> Tensor:
    return torch.linalg.vector_norm(x, dim=REDUCE, keepdim=True)


def _rms(x: Tensor) -> Tensor:
    return x.square().mean(dim=REDUCE, keepdim=True).sqrt()


register("norm", 1, Rd, _norm, _f("norm"), "Frobenius norm of the tensor", cost=2.0)
register("rms", 1, Rd, _rms, _f("rms"), "root mean square of the tensor", cost=2.0)
register("mean", 1, Rd, lambda x: x.mean(dim=REDUCE, keepdim=True), _f("mean"),
         "mean of the tensor")
register("sum", 1, Rd, lambda x: x.sum(dim=REDUCE, keepdim=True), _f("sum"),
         "sum of the tensor")
register("max_abs", 1, Rd, lambda x: x.abs().amax(dim=REDUCE, keepdim=True), _f("max_abs"),
         "largest absolute entry of the tensor")
register("std", 1, Rd, lambda x: x.std(dim=REDUCE, keepdim=True, correction=0), _f("std"),
         "population standard deviation of the tensor", cost=2.0)
register("numel", 1, Rd,
         lambda x: torch.full((x.shape[0], 1, 1), x.shape[-1] * x.shape[-2], dtype=x.dtype,
                              device=x.device),
         _f("numel"), "number of entries of the tensor (per replica)", cost=0.1)


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


def orthogonalize(x: Tensor, steps: int = 5) -> Tensor:
    """Newton-Schulz quintic iteration towards the nearest semi-orthogonal matrix.

    Muon's coefficients ``(a, b, c) = (3.4445, -4.7750, 2.0315)``:
    ``X <- a X + (b A + c A^2) X`` with ``A = X X^T``, after ``X <- X / max(||X||_F, 1e-7)``
    (the normalisation of torch.optim.Muon and pytorch_optimizer's Muon);
    works on the wide orientation (transposes tall matrices).
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    tall = x.shape[-2] > x.shape[-1]
    y = x.mT if tall else x
    y = y / torch.linalg.vector_norm(y, dim=REDUCE, keepdim=True).clamp_min(1e-7)
    for _ in range(steps):
        gram = y @ y.mT
        y = a * y + (b * gram + c * gram @ gram) @ y
    return y.mT if tall else y


register("row_mean", 1, M, lambda x: x.mean(dim=-1, keepdim=True), _f("row_mean"),
         "mean over each row of the 2-D view (R x 1)", shape_rule=_rule_row)
register("col_mean", 1, M, lambda x: x.mean(dim=-2, keepdim=True), _f("col_mean"),
         "mean over each column of the 2-D view (1 x C)", shape_rule=_rule_col)
register("row_norm", 1, M, lambda x: torch.linalg.vector_norm(x, dim=-1, keepdim=True),
         _f("row_norm"), "L2 norm of each row of the 2-D view (R x 1)", shape_rule=_rule_row)
register("col_norm", 1, M, lambda x: torch.linalg.vector_norm(x, dim=-2, keepdim=True),
         _f("col_norm"), "L2 norm of each column of the 2-D view (1 x C)",
         shape_rule=_rule_col)
register("transpose", 1, M, lambda x: x.mT, lambda a: S.Function("transpose")(a),
         "transpose of the 2-D view", shape_rule=_rule_transpose, cost=0.5)
register("matmul", 2, M, torch.matmul, lambda a, b: S.Function("matmul")(a, b),
         "matrix product of 2-D views", shape_rule=_rule_matmul, cost=4.0)
register("orthogonalize", 1, M, orthogonalize, _f("orth"),
         "Newton-Schulz orthogonalisation of the 2-D view (Muon)", shape_rule=_rule_same,
         cost=20.0)

# ---------------------------------------------------------------- global ops

G = "global"


def _global_sum(xs: list[Tensor], f) -> Tensor:
    return torch.stack([f(x).sum(dim=REDUCE, keepdim=True) for x in xs]).sum(0)


def _global_numel(xs: list[Tensor]) -> int:
    return sum(x.shape[-1] * x.shape[-2] for x in xs)


register("global_norm", 1, G, lambda xs: _global_sum(xs, torch.square).sqrt(),
         _f("global_norm"), "L2 norm over all parameters of the group", cost=2.0)
register("global_rms", 1, G,
         lambda xs: (_global_sum(xs, torch.square) / _global_numel(xs)).sqrt(),
         _f("global_rms"), "root mean square over all parameters of the group", cost=2.0)
register("global_mean", 1, G, lambda xs: _global_sum(xs, lambda x: x) / _global_numel(xs),
         _f("global_mean"), "mean over all parameters of the group", cost=2.0)
register("global_max_abs", 1, G,
         lambda xs: torch.stack([x.abs().amax(dim=REDUCE, keepdim=True) for x in xs]).amax(0),
         _f("global_max_abs"), "largest absolute entry over all parameters", cost=2.0)

FAMILIES = ("elementwise", "reduction", "matrix", "global")
INFIX_BINARY = {op.infix: op.name for op in REGISTRY.values() if op.infix and op.arity == 2}
