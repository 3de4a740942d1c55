"""The kernel plan: the fused calls a traced step makes, as data, and their torch binding.

:mod:`optforge.lang.fuse` traces a program once into a list of :class:`Kernel`
records ``R[dest] = call(*args)`` over numbered registers. Two consumers read the
same list: :func:`bind` turns each record into a closure over torch calls (the
eager step of :class:`~optforge.optim.ProgramOptimizer` replays them), and
:mod:`optforge.export.lower` prints each record as a line of Python source (the
exported file). What runs and what is exported are therefore one plan.

``call`` is either a multi-tensor kernel, named by its ``torch._foreach_*``
suffix (``mul_``, ``addcdiv_``, ``lerp``, ...; ``add_alpha``/``add_alpha_`` is
``_foreach_add(x, y, alpha=c)``), or one of

* ``scalar``: ``op.scalar`` on Python floats (``op`` names the registry op);
* ``uniform``: ``op`` on uniform values of which one is a per-replica tensor;
* ``global``: the global reduction ``op`` of a list;
* ``each``: ``op`` tensor by tensor (its multi-tensor form if it has one);
* ``expand``: a uniform value as a list (one shared tensor);
* ``const``: a constant (``args = (value,)``) in a register;
* ``clone`` / ``transpose``: new tensors, views.

A uniform per-replica tensor operand of a multi-tensor kernel is passed as a
list (the same tensor once per parameter); ``each``, ``uniform``, ``global`` and
``expand`` take it as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import ops
from .shapes import Shape

Value = float | torch.Tensor | list

N_REG, LIKE_REG, W_REG = 0, 1, 2  # registers past the plan's: tensor count, dtype, parameters
N_EXTRA = 3
OWN_CALLS = frozenset({"scalar", "uniform", "global", "each", "expand", "const", "clone",
                       "transpose"})
NOT_KERNELS = frozenset({"scalar", "uniform", "expand", "const"})  # no pass over the tensors


@dataclass(frozen=True, eq=False)
class Scalar:
    """A uniform scalar: a trace-time constant, or a float / (K,1,1) tensor register."""

    reg: int | None
    const: float | None = None
    tensor: bool = False

    def key(self) -> tuple:
        return ("c", self.const) if self.reg is None else ("t" if self.tensor else "f", self.reg)


@dataclass(frozen=True, eq=False)
class Tensors:
    """A materialised list in register ``reg``, living in buffer ``buf``."""

    reg: int
    buf: int
    shape: Shape
    view: bool = False  # a view of another buffer, or one tensor repeated: never written

    def key(self) -> tuple:
        return ("L", self.reg)


@dataclass(frozen=True, eq=False)
class Kernel:
    """One recorded call ``R[dest] = call(*args)`` (``dest`` None: in place on ``args[0]``),
    made for program statement ``stmt`` (``len(body)``: the outputs)."""

    call: str
    args: tuple
    dest: int | None = None
    stmt: int = 0
    op: str | None = None

    def key(self) -> tuple:
        """The kernel as comparable data (two plans are one when their keys are)."""
        args = tuple(a.key() if isinstance(a, Scalar | Tensors) else a for a in self.args)
        return (self.call, self.op, self.dest, args)


# ------------------------------------------------------------------ torch binding


def _add_alpha_(out, x, c):
    return torch._foreach_add_(out, x, alpha=c)


def _add_alpha(x, y, c):
    return torch._foreach_add(x, y, alpha=c)


def _lerp_(a: list, b: list, t) -> None:
    """``a <- a + t (b - a)``. Per-replica weights stay float32 for half-precision
    lists (bf16 would round 0.999 to 1), which ``lerp`` does not take: then
    ``a (1 - t) + b t``."""
    if isinstance(t, list) and t[0].dtype != a[0].dtype:
        torch._foreach_mul_(a, [1 - t[0]] * len(a))
        torch._foreach_addcmul_(a, b, t)
    else:
        torch._foreach_lerp_(a, b, t)


def _lerp(a: list, b: list, t) -> list:
    """``a + t (b - a)`` in new tensors (see :func:`_lerp_`)."""
    if isinstance(t, list) and t[0].dtype != a[0].dtype:
        out = torch._foreach_mul(a, [1 - t[0]] * len(a))
        torch._foreach_addcmul_(out, b, t)
        return out
    return torch._foreach_lerp(a, b, t)


def _clone(xs: list) -> list:
    return [x.clone(memory_format=torch.contiguous_format) for x in xs]


def _transpose(xs: list) -> list:
    return [x.mT for x in xs]


_SPECIAL = {"add_alpha_": _add_alpha_, "add_alpha": _add_alpha, "lerp_": _lerp_,
            "lerp": _lerp, "clone": _clone, "transpose": _transpose}
SCALAR_ARGS_OK = frozenset({"add", "sub", "mul", "div", "pow"})
"""Ops whose torch functions take a Python number as an operand (others need a tensor)."""


def scalar_tensor(x: Value, like: torch.Tensor) -> torch.Tensor:
    """A uniform value as a tensor: a float as a 0-d tensor (it broadcasts against
    any shape), a per-replica value as it is, ``(K, 1, 1)``."""
    if isinstance(x, torch.Tensor):
        return x
    return torch.tensor(x, dtype=like.dtype, device=like.device)


def _getter(x, n: int, expand: bool) -> Callable:
    """Run-time getter of an operand; per-replica scalars become lists (one entry
    per tensor) when ``expand``."""
    if isinstance(x, Tensors):
        r = x.reg
        return lambda R: R[r]
    if x.const is not None:
        c = x.const
        return lambda R: c
    r = x.reg
    if x.tensor and expand:
        return lambda R: [R[r]] * R[n]
    return lambda R: R[r]


def bind(k: Kernel, base: int) -> Callable[[list], None]:
    """The closure that runs ``k`` on the registers (``base``: the first register past
    the plan's, see :data:`N_REG`)."""
    n, like = base + N_REG, base + LIKE_REG
    dest = k.dest
    if k.call == "const":
        (c,) = k.args
        return lambda R: R.__setitem__(dest, c)
    if k.call == "scalar":
        return _call(ops.REGISTRY[k.op].scalar, [_getter(a, n, False) for a in k.args], dest)
    if k.call == "uniform":
        return _uniform(ops.REGISTRY[k.op], [_getter(a, n, False) for a in k.args], dest, n,
                        like)
    if k.call == "expand":
        g = _getter(k.args[0], n, False)

        def step(R):
            R[dest] = [scalar_tensor(g(R), R[like])] * R[n]
        return step
    if k.call == "each":
        return _each(ops.REGISTRY[k.op], k.args, dest, n, like)
    if k.call == "global":
        fn = ops.REGISTRY[k.op].fn
    else:
        fn = _SPECIAL.get(k.call) or getattr(torch, f"_foreach_{k.call}")
    return _call(fn, [_getter(a, n, True) for a in k.args], dest)


def _call(fn: Callable, gets: list[Callable], dest: int | None) -> Callable:
    """``R[dest] = fn(*operands)``, unrolled for one and two operands."""
    if len(gets) == 1:
        (g0,) = gets
        if dest is None:
            return lambda R: fn(g0(R))

        def step1(R):
            R[dest] = fn(g0(R))
        return step1
    if len(gets) == 2:
        g0, g1 = gets
        if dest is None:
            return lambda R: fn(g0(R), g1(R))

        def step2(R):
            R[dest] = fn(g0(R), g1(R))
        return step2
    if dest is None:
        return lambda R: fn(*[g(R) for g in gets])

    def step(R):
        R[dest] = fn(*[g(R) for g in gets])
    return step


def _uniform(op: ops.Op, gets: list[Callable], r: int, n: int, like: int) -> Callable:
    fn = op.fn
    if op.family == "global":  # a uniform value is a 1 x 1 value in every parameter
        (g0,) = gets

        def step(R):
            R[r] = fn([scalar_tensor(g0(R), R[like]).reshape(-1, 1, 1)] * R[n])
    elif op.name in SCALAR_ARGS_OK:
        def step(R):
            R[r] = fn(*[g(R) for g in gets])
    elif op.family == "elementwise":
        def step(R):
            R[r] = fn(*[scalar_tensor(g(R), R[like]) for g in gets])
    else:  # a reduction or matrix op of a uniform value: a (K, 1, 1) view of it
        def step(R):
            R[r] = fn(*[scalar_tensor(g(R), R[like]).reshape(-1, 1, 1) for g in gets])
    return step


def _each(op: ops.Op, args: tuple, r: int, n_reg: int, like_reg: int) -> Callable:
    """``op`` on lists: its multi-tensor form if it has one, else one call per tensor."""
    kinds = ["L" if isinstance(v, Tensors) else "t" if v.tensor else "c" if v.const is not None
             else "f" for v in args]
    gets = tuple(_getter(v, n_reg, False) for v in args)
    fe = op.foreach if op.family == "elementwise" else None
    fn = op.fn
    consts: dict = {}  # constants as tensors, made once per dtype and device
    # element-wise ops broadcast a 0-d scalar against any layout; matrix ops and
    # reductions see every operand as (K, R, C)
    dims = (-1, 1, 1) if op.family != "elementwise" else ()

    def tensor(x, k, like):
        if k != "c":
            return scalar_tensor(x, like).reshape(dims) if dims else scalar_tensor(x, like)
        key = (x, like.dtype, like.device)
        if key not in consts:
            consts[key] = scalar_tensor(x, like).reshape(dims)
        return consts[key]

    def step(R):
        xs = [g(R) for g in gets]
        n = R[n_reg]
        out = None
        if fe is not None:
            out = fe(*[[x] * n if k == "t" else x for x, k in zip(xs, kinds, strict=True)])
        if out is None:
            like = R[like_reg]
            cols = [x if k == "L" else [tensor(x, k, like)] * n
                    for x, k in zip(xs, kinds, strict=True)]
            out = [fn(*row) for row in zip(*cols, strict=True)]
        R[r] = list(out)

    return step
