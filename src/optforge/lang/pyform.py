"""Python source of float expressions: the print forms of the registry's ``scalar`` ops.

A :class:`Py` is an expression's text with the precedence of its outermost
operator, so that builders parenthesise only where Python needs it. The op
registry (:mod:`optforge.lang.ops`) gives each op with a float form a builder
(``Op.py``); :mod:`optforge.export.lower` uses them to print a traced step's
float arithmetic. IEEE edge cases that Python's operators raise on call the
helpers of :mod:`optforge.lang.helpers` (``_div``, ``_pow``, ...), whose source
the exported file copies.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

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


def infix(op: str, prec: int) -> Callable[[Py, Py], Py]:
    def build(a: Py, b: Py) -> Py:
        return Py(f"{wrap(a, prec)} {op} {wrap(b, prec + 1)}", prec)

    return build


def call(name: str) -> Callable[..., Py]:
    def build(*args: Py) -> Py:
        return Py(f"{name}({', '.join(a.text for a in args)})")

    return build


def div(a: Py, b: Py) -> Py:
    """Plain ``/`` by a nonzero literal, else the IEEE helper."""
    if b.value is not None and b.value != 0:
        return infix("/", MUL)(a, b)
    return call("_div")(a, b)


def square(a: Py) -> Py:
    return Py(f"{wrap(a, MUL + 1)} * {wrap(a, MUL + 1)}", MUL)


def interp(a: Py, b: Py, t: Py) -> Py:
    return Py(f"{wrap(a, ADD)} + {wrap(t, MUL)} * ({b.text} - {wrap(a, ADD + 1)})", ADD)


def where(c: Py, a: Py, b: Py) -> Py:
    return Py(f"{wrap(a, COND + 1)} if {wrap(c, CMP + 1)} > 0 else {wrap(b, COND)}", COND)


def compare(op: str) -> Callable[[Py, Py], Py]:
    def build(a: Py, b: Py) -> Py:
        return Py(f"float({wrap(a, CMP + 1)} {op} {wrap(b, CMP + 1)})")

    return build


def softsign(a: Py) -> Py:  # 1 + |a| >= 1 (or NaN): plain division is safe
    return Py(f"{wrap(a, MUL)} / (1 + abs({a.text}))", MUL)


def relu(a: Py) -> Py:
    return call("max")(a, Py("0.0", ATOM, 0.0))


def reciprocal(a: Py) -> Py:
    return call("_div")(number(1), a)
