"""Tuning search spaces.

A space maps hyperparameter names (``lr`` and the program's keyword
hyperparameters) to a :class:`Dim`; hyperparameters it leaves out keep the
program's defaults. Zoo optimizers declare their space in
``zoo/catalog.toml`` as ``name = [kind, low, high]``; user programs get
:func:`default_space`, derived from their hyperparameter defaults ``d``:

=====================  ==========================================================
``lr``                 ``log [1e-5, 1e-1]`` (a program declares no default lr)
``d == 0``             fixed (the author switched the term off)
``d < 0``              fixed
``0 < d <= 1e-5``      fixed (an epsilon-like guard, not a rate)
``0.5 <= d < 1``       ``log1m``: ``1 - x`` log-uniform in
                       ``[(1 - d) / 3, min(3 (1 - d), 1/2)]`` (betas: 0.9 ->
                       [0.7, 0.967], 0.999 -> [0.997, 0.99967])
otherwise              ``log [d / 10, 10 d]`` (weight decay, scales, clips)
=====================  ==========================================================

Kinds: ``log`` (log-uniform in ``[low, high]``), ``linear`` (uniform),
``log1m`` (``1 - x`` log-uniform, with ``low, high`` the bounds of ``x``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ..lang.ir import Program

KINDS = ("log", "linear", "log1m")
DEFAULT_LR = ("log", 1e-5, 1e-1)
EPS_LIKE = 1e-5
EDGE = 0.05  # a value in the outer 5% of a range (in its sampling scale) is at its edge
DECADE = 10.0  # a log or log1m range widens by this factor per widening


@dataclass(frozen=True)
class Dim:
    """One tuned hyperparameter: ``kind`` over ``[low, high]`` (bounds of the value itself)."""

    kind: str
    low: float
    high: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown space kind {self.kind!r}; kinds: {', '.join(KINDS)}")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"space bounds must be finite with low < high, got "
                             f"[{self.low}, {self.high}]")
        if self.kind == "log" and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        if self.kind == "log1m" and self.high >= 1:
            raise ValueError(f"a log1m range needs high < 1, got {self.high}")

    def suggest(self, trial, name: str) -> float:
        """Draw a value from an Optuna trial (parameter ``name``, or ``1-name`` for log1m)."""
        if self.kind == "log1m":
            return 1.0 - trial.suggest_float(f"1-{name}", 1 - self.high, 1 - self.low, log=True)
        return trial.suggest_float(name, self.low, self.high, log=self.kind == "log")

    def as_list(self) -> list:
        return [self.kind, self.low, self.high]

    def _scale(self, x: float) -> float:
        if self.kind == "log":
            return math.log(x)
        if self.kind == "log1m":
            return -math.log(1 - x)
        return x

    def position(self, value: float) -> float:
        """Where ``value`` lies in the range, 0 at ``low`` and 1 at ``high``, in the scale
        the range is sampled in (``log x``, ``-log(1 - x)`` or ``x``)."""
        lo, hi = self._scale(self.low), self._scale(self.high)
        return (self._scale(value) - lo) / (hi - lo)

    def at(self, position: float) -> float:
        """The value at ``position`` (the inverse of :meth:`position`)."""
        lo, hi = self._scale(self.low), self._scale(self.high)
        y = lo + position * (hi - lo)
        if self.kind == "log":
            return math.exp(y)
        if self.kind == "log1m":
            return 1 - math.exp(-y)
        return y

    def edge(self, value: float) -> str | None:
        """``"low"`` or ``"high"`` when ``value`` lies in the outer :data:`EDGE` of the range."""
        p = self.position(value)
        return "low" if p < EDGE else "high" if p > 1 - EDGE else None

    def widen(self, side: str) -> Dim | None:
        """The range extended beyond its ``side`` edge, or None at the hard limit.

        ``log``: one decade (``low / 10`` or ``high * 10``). ``log1m``: one decade
        of ``1 - x`` (``x`` never reaches 1; ``low`` stops at 0). ``linear``: one
        range width, never changing the sign of a bound (a bound that would cross
        zero goes to a tenth of itself; ``low`` stops at 0 when it is 0), and a
        range inside ``(0, 1)`` (a momentum) keeps its ``high`` below 1 (at most a
        tenth of the way left: ``1 - (1 - high) / 10``).
        """
        lo, hi = self.low, self.high
        if self.kind == "log":
            lo, hi = (lo / DECADE, hi) if side == "low" else (lo, hi * DECADE)
        elif self.kind == "log1m":
            if side == "low":
                lo = max(0.0, 1 - (1 - lo) * DECADE)
            else:
                hi = 1 - (1 - hi) / DECADE
        else:
            width = hi - lo
            if side == "low":
                if lo > 0:
                    lo = lo - width if lo - width > 0 else lo / DECADE
                elif lo < 0:
                    lo = lo - width
            elif lo > 0 and hi < 1:
                hi = min(hi + width, 1 - (1 - hi) / DECADE)
            elif hi < 0:
                hi = hi + width if hi + width < 0 else hi / DECADE
            elif hi > 0:
                hi = hi + width
        if (lo, hi) == (self.low, self.high) or not lo < hi:
            return None
        return Dim(self.kind, lo, hi)

    def __str__(self) -> str:
        return f"[{self.low:.3g}, {self.high:.3g}]"


Space = dict[str, Dim]


def parse_space(raw: Mapping[str, object], program: Program, where: str = "space") -> Space:
    """A space from ``{name: [kind, low, high]}``, checked against the program's hyperparameters."""
    known = {"lr", *program.hyperparameters}
    out: Space = {}
    for name, spec in raw.items():
        if name not in known:
            raise ValueError(f"{where}: {name!r} is not a hyperparameter of {program.name!r}; "
                             f"it takes {', '.join(sorted(known))}")
        if isinstance(spec, Dim):
            out[name] = spec
            continue
        if (not isinstance(spec, list | tuple) or len(spec) != 3 or not isinstance(spec[0], str)
                or not all(isinstance(v, int | float) and not isinstance(v, bool)
                           for v in spec[1:])):
            raise ValueError(f"{where}: {name!r} must be [kind, low, high], got {spec!r}")
        try:
            out[name] = Dim(spec[0], float(spec[1]), float(spec[2]))
        except ValueError as err:
            raise ValueError(f"{where}: {name!r}: {err}") from None
    return out


def default_dim(default: float) -> Dim | None:
    """The default range for a hyperparameter whose program default is ``default`` (None: fixed)."""
    d = float(default)
    if d <= EPS_LIKE:
        return None
    if 0.5 <= d < 1:
        gap = 1 - d
        return Dim("log1m", 1 - min(3 * gap, 0.5), 1 - gap / 3)
    return Dim("log", d / 10, d * 10)


def default_space(program: Program) -> Space:
    """The space of a user program: see the module docstring for the rule."""
    space: Space = {"lr": Dim(*DEFAULT_LR)}
    for name, value in program.hyper:
        dim = default_dim(value)
        if dim is not None:
            space[name] = dim
    return space


def suggest(trial, space: Space) -> dict[str, float]:
    """One configuration drawn from an Optuna trial."""
    return {name: dim.suggest(trial, name) for name, dim in space.items()}


def center(space: Space, program: Program) -> dict[str, float]:
    """A configuration inside the space: the program's default where it lies inside,
    else the (geometric, for log kinds) midpoint; ``lr`` at its midpoint."""
    out = {}
    for name, dim in space.items():
        d = program.hyperparameters.get(name)
        if d is not None and dim.low <= d <= dim.high:
            out[name] = float(d)
        elif dim.kind == "log":
            out[name] = math.sqrt(dim.low * dim.high)
        elif dim.kind == "log1m":
            out[name] = 1 - math.sqrt((1 - dim.low) * (1 - dim.high))
        else:
            out[name] = (dim.low + dim.high) / 2
    return out
