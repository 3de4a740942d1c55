"""Every op of the registry against an independent NumPy/SciPy reference.

One table (``REF``) gives, for every op, a NumPy formula written from the
op's documented meaning and the input domain of each argument. The tests run
``fn`` on random float64 ``(K, R, C)`` inputs, the multi-tensor ``foreach``
form on lists (with float and list operand mixes) and the pure-float
``scalar`` form on 0-d inputs (including infinities and NaN) against it, check
each shape rule against the shapes the torch implementation really produces,
and evaluate each element-wise op's sympy form numerically.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.special
import sympy as sp
import torch

from optforge.lang import ops
from optforge.lang.ops import FAMILIES, INFIX_BINARY, REGISTRY, orthogonalize
from optforge.lang.shapes import COL, FULL, ROW, SCALAR, ShapeClash

K = 2
DTYPE = torch.float64
AX = (1, 2)  # the 2-D view's axes of a (K, R, C) array

# domain name -> sampler(rng, shape)
DOMAINS = {
    "real": lambda rng, shape: rng.standard_normal(shape),
    "pos": lambda rng, shape: rng.uniform(0.2, 3.0, shape),
    "gt-1": lambda rng, shape: rng.uniform(-0.9, 3.0, shape),
    "unit": lambda rng, shape: rng.uniform(0.0, 1.0, shape),
}


def _sumsq(xs):
    return sum((x**2).sum(axis=AX, keepdims=True) for x in xs)


def _numel(xs):
    return sum(x.shape[1] * x.shape[2] for x in xs)


# name -> (reference on NumPy arrays, domain of each argument)
REF = {
    # element-wise
    "add": (lambda a, b: a + b, ("real", "real")),
    "sub": (lambda a, b: a - b, ("real", "real")),
    "mul": (lambda a, b: a * b, ("real", "real")),
    "div": (lambda a, b: a / b, ("real", "pos")),
    "pow": (lambda a, b: a**b, ("pos", "real")),
    "neg": (lambda a: -a, ("real",)),
    "sign": (np.sign, ("real",)),
    "abs": (np.abs, ("real",)),
    "sqrt": (np.sqrt, ("pos",)),
    "rsqrt": (lambda a: 1.0 / np.sqrt(a), ("pos",)),
    "square": (lambda a: a * a, ("real",)),
    "reciprocal": (lambda a: 1.0 / a, ("pos",)),
    "exp": (np.exp, ("real",)),
    "log": (np.log, ("pos",)),
    "log1p": (np.log1p, ("gt-1",)),
    "expm1": (np.expm1, ("real",)),
    "tanh": (np.tanh, ("real",)),
    "sigmoid": (lambda a: 1.0 / (1.0 + np.exp(-a)), ("real",)),
    "softsign": (lambda a: a / (1.0 + np.abs(a)), ("real",)),
    "relu": (lambda a: np.where(a > 0, a, 0.0), ("real",)),
    "sin": (np.sin, ("real",)),
    "cos": (np.cos, ("real",)),
    "atan": (np.arctan, ("real",)),
    "erf": (scipy.special.erf, ("real",)),
    "maximum": (np.maximum, ("real", "real")),
    "minimum": (np.minimum, ("real", "real")),
    "clip": (lambda x, c: np.clip(x, -c, c), ("real", "pos")),
    "interp": (lambda a, b, t: (1.0 - t) * a + t * b, ("real", "real", "unit")),
    "where": (lambda c, a, b: np.where(c > 0, a, b), ("real", "real", "real")),
    "gt": (lambda a, b: (a > b).astype(float), ("real", "real")),
    "lt": (lambda a, b: (a < b).astype(float), ("real", "real")),
    "mod": (np.mod, ("real", "real")),  # remainder with the sign of the divisor, like %
    # per-tensor reductions, one number per replica
    "norm": (lambda x: np.sqrt((x**2).sum(axis=AX, keepdims=True)), ("real",)),
    "rms": (lambda x: np.sqrt((x**2).mean(axis=AX, keepdims=True)), ("real",)),
    "mean": (lambda x: x.mean(axis=AX, keepdims=True), ("real",)),
    "sum": (lambda x: x.sum(axis=AX, keepdims=True), ("real",)),
    "max_abs": (lambda x: np.abs(x).max(axis=AX, keepdims=True), ("real",)),
    "std": (lambda x: x.std(axis=AX, keepdims=True), ("real",)),
    "numel": (lambda x: np.full((x.shape[0], 1, 1), float(x.shape[1] * x.shape[2])), ("real",)),
    # matrix ops on the 2-D view
    "row_mean": (lambda x: x.mean(axis=2, keepdims=True), ("real",)),
    "col_mean": (lambda x: x.mean(axis=1, keepdims=True), ("real",)),
    "row_norm": (lambda x: np.sqrt((x**2).sum(axis=2, keepdims=True)), ("real",)),
    "col_norm": (lambda x: np.sqrt((x**2).sum(axis=1, keepdims=True)), ("real",)),
    "transpose": (lambda x: np.swapaxes(x, 1, 2), ("real",)),
    "matmul": (lambda a, b: np.einsum("kij,kjl->kil", a, b), ("real", "real")),
    "orthogonalize": (None, ("real",)),  # see test_orthogonalize_is_the_polar_factor
    # global reductions over a list of tensors
    "global_norm": (lambda xs: np.sqrt(_sumsq(xs)), ("real",)),
    "global_rms": (lambda xs: np.sqrt(_sumsq(xs) / _numel(xs)), ("real",)),
    "global_mean": (lambda xs: sum(x.sum(axis=AX, keepdims=True) for x in xs) / _numel(xs),
                    ("real",)),
    "global_max_abs": (lambda xs: np.max([np.abs(x).max(axis=AX, keepdims=True) for x in xs],
                                         axis=0), ("real",)),
}

NAMES = sorted(REGISTRY)
ELEMENTWISE = [n for n in NAMES if REGISTRY[n].family == "elementwise"]
FOREACH = [n for n in NAMES if REGISTRY[n].foreach is not None]
SCALAR_OPS = [n for n in NAMES if REGISTRY[n].scalar is not None]


def _t(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=DTYPE)


def _draw(rng, name: str, shapes) -> list[np.ndarray]:
    return [DOMAINS[d](rng, s) for d, s in zip(REF[name][1], shapes, strict=True)]


def _input_shapes(op) -> list[tuple[tuple[int, ...], ...]]:
    """Concrete argument shapes to test ``fn`` on (with broadcasting for element-wise ops)."""
    r, c = 3, 5
    if op.name == "matmul":
        return [((K, r, c), (K, c, 4)), ((K, c, r), (K, r, r))]
    if op.family == "elementwise":
        full, row, col, one = (K, r, c), (K, r, 1), (K, 1, c), (K, 1, 1)
        mixes = [tuple([full] * op.arity)]
        if op.arity > 1:
            mixes.append(tuple([full] + [row, col, one][: op.arity - 1]))
            mixes.append(tuple([one] * (op.arity - 1) + [full]))
        return mixes
    return [((K, r, c),), ((K, 1, 1),), ((K, 7, 1),)]


# ------------------------------------------------------------------ registry


def test_registry_covers_the_four_families():
    assert len(REGISTRY) >= 40
    counts = {f: sum(op.family == f for op in REGISTRY.values()) for f in FAMILIES}
    assert all(counts[f] >= 1 for f in FAMILIES), counts
    assert {op.family for op in REGISTRY.values()} == set(FAMILIES)


def test_every_op_has_a_reference():
    """A new op must come with its own reference formula in this table."""
    assert set(REF) == set(REGISTRY)


@pytest.mark.parametrize("name", NAMES)
def test_entry_is_well_formed(name):
    op = REGISTRY[name]
    assert op.name == name and ops.get(name) is op
    assert op.arity == len(REF[name][1]) and op.arity >= 1
    assert op.doc.strip() and op.cost > 0
    if op.family == "global":
        assert op.foreach is None and op.scalar is None


def test_infix_table_matches_the_parser():
    assert INFIX_BINARY == {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow",
                            ">": "gt", "<": "lt"}
    assert REGISTRY["neg"].infix == "-"


def test_register_refuses_a_duplicate_name():
    with pytest.raises(ValueError, match="registered twice"):
        ops.register("add", 2, "elementwise", torch.add, lambda a, b: a + b, "again")


# ------------------------------------------------------------------ fn


@pytest.mark.parametrize("name", [n for n in NAMES if n != "orthogonalize"])
def test_fn_matches_reference(name):
    op = REGISTRY[name]
    ref = REF[name][0]
    rng = np.random.default_rng(sum(map(ord, name)))
    if op.family == "global":
        xs = [DOMAINS["real"](rng, s) for s in ((K, 3, 4), (K, 5, 1), (K, 1, 1))]
        got = op.fn([_t(x) for x in xs])
        assert got.shape == (K, 1, 1)
        np.testing.assert_allclose(got.numpy(), ref(xs), rtol=1e-12, atol=1e-12)
        return
    for shapes in _input_shapes(op):
        args = _draw(rng, name, shapes)
        got = op.fn(*map(_t, args))
        want = ref(*args)
        assert got.dtype == DTYPE
        assert tuple(got.shape) == want.shape, (shapes, got.shape, want.shape)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in NAMES if REGISTRY[n].arity == 2
                                  and REGISTRY[n].family == "elementwise"])
def test_commutative_flag_is_honest(name):
    """The structural hash sorts the operands of ops flagged commutative."""
    op = REGISTRY[name]
    rng = np.random.default_rng(7)
    a, b = (_t(x) for x in _draw(rng, name, [(K, 3, 4)] * 2))
    if REF[name][1] == ("real", "real"):
        swapped_equal = torch.equal(op.fn(a, b), op.fn(b, a))
        assert swapped_equal == op.commutative
    else:  # asymmetric domains: never commutative
        assert not op.commutative


# ------------------------------------------------------------------ orthogonalize


def _with_spectrum(rng, k, r, c, low, scale):
    n = min(r, c)
    u = np.linalg.qr(rng.standard_normal((k, r, n)))[0]
    v = np.linalg.qr(rng.standard_normal((k, c, n)))[0]
    s = rng.uniform(low, 1.0, (k, n)) * scale
    return (u * s[:, None, :]) @ np.swapaxes(v, 1, 2)


NS = (3.4445, -4.7750, 2.0315)  # Muon's quintic coefficients, from the docstring


def _ns_scalar(x: np.ndarray, steps: int = 5) -> np.ndarray:
    """The quintic applied to singular values: ``s <- a s + b s^3 + c s^5``."""
    a, b, c = NS
    for _ in range(steps):
        x = a * x + b * x**3 + c * x**5
    return x


@pytest.mark.parametrize("shape", [(2, 8, 5), (2, 5, 8), (3, 6, 6), (1, 1, 7), (1, 9, 1)])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_orthogonalize_is_the_polar_factor(shape, scale):
    """Newton-Schulz keeps the singular vectors and maps singular values into ~[0.7, 1.2].

    For the SVD ``X = U S V^T`` the result is ``U f(S) V^T``: ``U^T O V`` is
    diagonal, ``f`` is the quintic iterated five times on ``S / ||X||_F``, and
    its values lie in the quintic's attracting band [0.682, 1.203] once
    ``S / ||X||_F >= 0.02`` (here >= 0.1 / sqrt(8)), so ``O`` is within 0.32 of
    the polar factor ``U V^T`` in spectral norm.
    """
    rng = np.random.default_rng(shape[1] * 100 + shape[2])
    x = _with_spectrum(rng, *shape, low=0.1, scale=scale)
    o = orthogonalize(_t(x)).numpy()
    assert o.shape == x.shape
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    core = np.swapaxes(u, 1, 2) @ o @ np.swapaxes(vt, 1, 2)  # U^T O V
    diag = np.diagonal(core, axis1=1, axis2=2)
    off = core - np.einsum("ki,ij->kij", diag, np.eye(diag.shape[1]))
    assert np.abs(off).max() < 1e-9
    assert diag.min() > 0.68 and diag.max() < 1.21, diag
    frob = np.linalg.norm(x, axis=(1, 2))[:, None]
    np.testing.assert_allclose(diag, _ns_scalar(s / frob), rtol=1e-3)
    polar = u @ vt
    assert np.linalg.norm(o - polar, ord=2, axis=(1, 2)).max() < 0.32
    # nothing of o lies outside the span of X's singular vectors
    np.testing.assert_allclose(u @ core @ vt, o, atol=1e-9)


def test_orthogonalize_of_zero_is_zero():
    out = orthogonalize(torch.zeros(2, 3, 4, dtype=DTYPE))
    assert torch.equal(out, torch.zeros(2, 3, 4, dtype=DTYPE))


def test_orthogonalize_treats_replicas_independently():
    rng = np.random.default_rng(3)
    x = _with_spectrum(rng, 3, 6, 4, low=0.2, scale=1.0)
    x[1] *= 1e4
    both = orthogonalize(_t(x))
    for i in range(3):
        torch.testing.assert_close(both[i], orthogonalize(_t(x[i : i + 1]))[0])


# ------------------------------------------------------------------ foreach


def _operand_mixes(arity: int):
    """Each operand a list of tensors, a float, or a list of (K, 1, 1) tensors."""
    kinds = ("list", "float", "k11")
    for mix in itertools.product(kinds, repeat=arity):
        if "list" in mix:
            yield mix


@pytest.mark.parametrize("name", FOREACH)
def test_foreach_matches_fn(name):
    op = REGISTRY[name]
    ref_shapes = [(K, 3, 4), (K, 5, 1), (K, 1, 1)]
    rng = np.random.default_rng(11)
    ran = 0
    for mix in _operand_mixes(op.arity):
        args, rows = [], []
        for kind, dom in zip(mix, REF[name][1], strict=True):
            if kind == "list":
                value = [_t(DOMAINS[dom](rng, s)) for s in ref_shapes]
                per = value
            elif kind == "float":
                value = float(DOMAINS[dom](rng, ()))
                per = [_t(value)] * len(ref_shapes)
            else:
                t = _t(DOMAINS[dom](rng, (K, 1, 1)))
                value = [t] * len(ref_shapes)
                per = value
            args.append(value)
            rows.append(per)
        before = [[x.clone() for x in a] if isinstance(a, list) else a for a in args]
        got = op.foreach(*args)
        for a, b in zip(args, before, strict=True):  # operands are not written
            if isinstance(a, list):
                assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
        if got is None:  # documented fallback to per-tensor evaluation
            continue
        ran += 1
        got = list(got)
        want = [op.fn(*row) for row in zip(*rows, strict=True)]
        assert len(got) == len(want)
        for x, y in zip(got, want, strict=True):
            assert x.shape == y.shape, (mix, x.shape, y.shape)
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12, msg=f"{name} {mix}")
    assert ran > 0, f"{name}: foreach never ran"


# ------------------------------------------------------------------ scalar

SPECIAL = (0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 1e300, -1e300, 800.0, -800.0, math.inf, -math.inf,
           math.nan)


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b) or a == 0 or b == 0:
        return a == b
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300)


@pytest.mark.parametrize("name", SCALAR_OPS)
def test_scalar_matches_fn_on_random_values(name):
    op = REGISTRY[name]
    rng = np.random.default_rng(5)
    for _ in range(50):
        args = [float(DOMAINS[d](rng, ())) for d in REF[name][1]]
        got = op.scalar(*args)
        want = op.fn(*map(_t, args)).item()
        assert isinstance(got, float | int) and _same(float(got), want), (args, got, want)


@pytest.mark.parametrize("name", SCALAR_OPS)
def test_scalar_matches_fn_on_special_values(name):
    """Zeros, huge values, infinities and NaN: the float path agrees with torch."""
    op = REGISTRY[name]
    bad = []
    for args in itertools.product(SPECIAL, repeat=op.arity):
        try:
            got = float(op.scalar(*args))
        except Exception as e:  # noqa: BLE001 - a raise is itself a mismatch
            got = f"raised {type(e).__name__}"
        want = op.fn(*map(_t, args)).item()
        if isinstance(got, str) or not _same(got, want):
            bad.append((args, got, want))
    assert not bad, f"{name}: {len(bad)} mismatches, e.g. {bad[:5]}"


# ------------------------------------------------------------------ shape rules

ABSTRACT = [FULL, ROW, COL, SCALAR, ("C", "R"), ("R", "R"), ("C", "C"), ("C", 1), (1, "R")]
SIZES = {"R": 3, "C": 5, 1: 1}


def _concrete(shape) -> tuple[int, int, int]:
    return (K, SIZES[shape[0]], SIZES[shape[1]])


@pytest.mark.parametrize("name", NAMES)
def test_shape_rule_agrees_with_torch(name):
    """On every combination of abstract shapes, the rule predicts the concrete output
    shape (with R=3, C=5) or raises ShapeClash exactly when torch cannot combine them."""
    op = REGISTRY[name]
    rng = np.random.default_rng(1)
    combos = itertools.product(ABSTRACT, repeat=op.arity) if op.arity < 3 else [
        (a, b, c) for a in ABSTRACT[:5] for b in ABSTRACT[:5] for c in (SCALAR, ROW, ("C", "R"))
    ]
    for shapes in combos:
        args = [_t(DOMAINS[d](rng, _concrete(s))) for d, s in zip(REF[name][1], shapes,
                                                                  strict=True)]
        try:
            predicted = op.shape(*shapes)
        except ShapeClash:
            predicted = None
        try:
            out = op.fn(args) if op.family == "global" else op.fn(*args)
        except RuntimeError:
            out = None
        if predicted is None:
            assert out is None, (shapes, out.shape)
        else:
            assert out is not None, shapes
            assert tuple(out.shape) == _concrete(predicted), (shapes, predicted, out.shape)


@pytest.mark.parametrize(
    "name, args, want",
    [
        ("add", (FULL, SCALAR), FULL),
        ("add", (ROW, COL), FULL),
        ("mul", (ROW, ROW), ROW),
        ("interp", (ROW, FULL, SCALAR), FULL),
        ("where", (SCALAR, COL, SCALAR), COL),
        ("norm", (FULL,), SCALAR),
        ("std", (ROW,), SCALAR),
        ("row_mean", (FULL,), ROW),
        ("col_mean", (FULL,), COL),
        ("row_norm", (COL,), SCALAR),
        ("col_norm", (FULL,), COL),
        ("transpose", (FULL,), ("C", "R")),
        ("transpose", (ROW,), (1, "R")),
        ("matmul", (FULL, ("C", "R")), ("R", "R")),
        ("matmul", (("C", "R"), FULL), ("C", "C")),
        ("matmul", (FULL, COL), None),
        ("matmul", (FULL, FULL), None),
        ("orthogonalize", (FULL,), FULL),
        ("global_norm", (FULL,), SCALAR),
        ("add", (FULL, ("C", "R")), None),
        ("add", (("R", "R"), FULL), None),
        ("maximum", (ROW, ("C", 1)), None),
    ],
)
def test_shape_rule_table(name, args, want):
    op = REGISTRY[name]
    if want is None:
        with pytest.raises(ShapeClash):
            op.shape(*args)
    else:
        assert op.shape(*args) == want


def test_uniformity():
    assert REGISTRY["add"].uniform(True, True)
    assert not REGISTRY["add"].uniform(True, False)
    assert REGISTRY["global_norm"].uniform(False)
    assert not REGISTRY["norm"].uniform(False)


# ------------------------------------------------------------------ sympy forms


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_sym_evaluates_like_fn(name):
    op = REGISTRY[name]
    xs = sp.symbols(f"x0:{op.arity}", real=True)
    expr = op.sym(*xs)
    assert isinstance(expr, sp.Basic)
    assert expr.free_symbols == set(xs)
    f = sp.lambdify(xs, expr, modules=["scipy", "numpy"])
    rng = np.random.default_rng(2)
    args = _draw(rng, name, [(K, 3, 4)] * op.arity)
    want = op.fn(*map(_t, args)).numpy()
    got = np.broadcast_to(np.asarray(f(*args), dtype=float), want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # and by substitution of exact numbers at one point
    point = [float(a.flat[0]) for a in args]
    value = expr.subs(dict(zip(xs, map(sp.Float, point), strict=True))).evalf()
    assert math.isclose(float(value), float(want.flat[0]), rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize("name", [n for n in NAMES if REGISTRY[n].family != "elementwise"])
def test_sym_of_structural_ops_is_an_expression_of_its_arguments(name):
    op = REGISTRY[name]
    xs = sp.symbols(f"x0:{op.arity}", real=True)
    expr = op.sym(*xs)
    assert isinstance(expr, sp.Basic)
    assert expr.free_symbols == set(xs)
    assert isinstance(sp.latex(expr), str) and sp.latex(expr)
