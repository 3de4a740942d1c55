"""Helpers copied verbatim into exported files: IEEE float arithmetic and orthogonalisation.

Python's float operators raise where torch returns ``inf`` or NaN (``1 / 0.0``,
``math.sqrt(-1)``, ``math.exp(1000)``). These helpers give torch's values, and
they are the ``scalar`` forms of the op registry (:mod:`optforge.lang.ops`): the
runtime computes a step's uniform floats with them, and :mod:`optforge.export`
copies the source of each one an exported file calls (``inspect.getsource``), so
both run the very same code. Their names start with ``_`` because they live
beside the user's names in an exported module; they import only ``math`` and
``torch``.
"""

from __future__ import annotations

import math

import torch


def _div(a, b):
    """a / b in IEEE arithmetic: a signed infinity or NaN where Python raises."""
    if b == 0:
        if a == 0 or a != a:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _pow(a, b):
    """a ** b with torch's infinities where Python raises, NaN for a complex result."""
    try:
        r = a**b
    except (ZeroDivisionError, OverflowError):
        odd = math.isfinite(b) and b == int(b) and int(b) % 2 == 1
        return -math.inf if math.copysign(1.0, a) < 0 and odd else math.inf
    return math.nan if isinstance(r, complex) else r


def _sign(a):
    """-1, 0 or 1 (0 for NaN, as torch.sign)."""
    return float((a > 0) - (a < 0))


def _sqrt(a):
    """sqrt(a); NaN below zero."""
    try:
        return math.sqrt(a)
    except ValueError:
        return math.nan


def _rsqrt(a):
    """1 / sqrt(a): a signed infinity at zero, NaN below zero."""
    if a == 0:
        return math.copysign(math.inf, a)
    try:
        return 1 / math.sqrt(a)
    except ValueError:
        return math.nan


def _exp(a):
    """e^a; inf on overflow."""
    try:
        return math.exp(a)
    except OverflowError:
        return math.inf


def _expm1(a):
    """e^a - 1; inf on overflow."""
    try:
        return math.expm1(a)
    except OverflowError:
        return math.inf


def _log(a):
    """Natural log: -inf at zero, NaN below zero."""
    if a > 0:
        return math.log(a)
    return -math.inf if a == 0 else math.nan


def _log1p(a):
    """log(1 + a): -inf at -1, NaN below."""
    if a == -1:
        return -math.inf
    try:
        return math.log1p(a)
    except ValueError:
        return math.nan


def _sigmoid(a):
    """1 / (1 + e^-a) without overflow."""
    if a < 0:
        e = math.exp(a)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(-a)) if a == a else math.nan


def _sin(a):
    """sin(a); NaN at infinity."""
    try:
        return math.sin(a)
    except ValueError:
        return math.nan


def _cos(a):
    """cos(a); NaN at infinity."""
    try:
        return math.cos(a)
    except ValueError:
        return math.nan


def _maximum(a, b):
    """max(a, b), NaN if either is NaN (as torch.maximum)."""
    return math.nan if a != a or b != b else max(a, b)


def _minimum(a, b):
    """min(a, b), NaN if either is NaN (as torch.minimum)."""
    return math.nan if a != a or b != b else min(a, b)


def _clip(a, c):
    """a clamped to [-c, c], NaN if either is NaN (as torch.clamp)."""
    return math.nan if a != a or c != c else min(max(a, -c), c)


def _mod(a, b):
    """a mod b with the sign of b (Python's %); NaN where Python raises."""
    try:
        return a % b
    except ZeroDivisionError:
        return math.nan


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
