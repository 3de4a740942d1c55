"""The abstract domain of type and shape inference.

Every tensor in a program is seen through the 2-D view of its parameter: a
parameter of shape ``(d0, d1, ..., dn)`` is viewed as ``R x C`` with
``R = d0`` and ``C = d1 * ... * dn`` (a vector of length ``n`` is ``n x 1``, a
scalar ``1 x 1``). Abstract execution never sees real sizes: a dimension is
either ``1`` or a symbol (``"R"``, ``"C"``), so a program that type-checks is
valid for every parameter shape at once. ``R x R`` (from ``matmul(x,
transpose(x))``) and ``R x C`` never combine, even though they coincide for
square parameters.

An :class:`Abstract` value also records whether it is *uniform* (the same for
every parameter: constants, hyperparameters, ``lr``, ``step``, global
reductions), and which inputs it depends on (to reject programs whose update
ignores the gradient, and to know whether a program reads ``h``).
"""

from __future__ import annotations

from dataclasses import dataclass

Dim = int | str
Shape = tuple[Dim, Dim]

FULL: Shape = ("R", "C")
ROW: Shape = ("R", 1)
COL: Shape = (1, "C")
SCALAR: Shape = (1, 1)


class ShapeClash(ValueError):
    """Raised by shape rules; inference turns it into a located ShapeError."""


@dataclass(frozen=True)
class Abstract:
    """What abstract execution knows of a value."""

    shape: Shape
    uniform: bool
    deps: frozenset[str] = frozenset()

    @property
    def is_scalar(self) -> bool:
        return self.shape == SCALAR


def broadcast(*shapes: Shape) -> Shape:
    """NumPy broadcasting on symbolic dims: ``1`` stretches, symbols must agree."""
    out: list[Dim] = []
    for axis in range(2):
        dims = {s[axis] for s in shapes} - {1}
        if len(dims) > 1:
            raise ShapeClash(f"cannot broadcast {' and '.join(map(show, shapes))}")
        out.append(dims.pop() if dims else 1)
    return (out[0], out[1])


def show(shape: Shape) -> str:
    """``(R, C)`` -> ``'R x C'``."""
    return f"{shape[0]} x {shape[1]}"


def view2d(shape: tuple[int, ...]) -> tuple[int, int]:
    """Concrete 2-D view of a parameter shape (see module docstring)."""
    if len(shape) == 0:
        return (1, 1)
    cols = 1
    for d in shape[1:]:
        cols *= d
    return (shape[0], cols)
