"""Learning-rate schedules: a multiplier of the base learning rate per step.

For steps ``t = 1..T`` and ``W`` warmup steps, the multiplier is ``t / W``
during warmup (``t <= W``) and then, with progress ``p = (t - W) / (T - W)``:

* ``constant``: 1;
* ``cosine``:   ``f + (1 - f) * (1 + cos(pi p)) / 2``;
* ``linear``:   ``f + (1 - f) * (1 - p)``;

where ``f`` is the final fraction (0 by default), reached at ``t = T``.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine", "linear")


def warmup_steps(warmup: int | float, total: int) -> int:
    """Warmup length in steps: an int is a count, a float in [0, 1) a fraction of ``total``."""
    if isinstance(warmup, bool) or not isinstance(warmup, int | float) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative step count or fraction, got {warmup!r}")
    if isinstance(warmup, float):
        if warmup >= 1:
            raise ValueError(f"a fractional warmup must be below 1, got {warmup}")
        return int(round(warmup * total))
    if warmup > total:
        raise ValueError(f"warmup of {warmup} steps exceeds the {total} training steps")
    return warmup


def multipliers(kind: str, total: int, warmup: int | float = 0, final: float = 0.0) -> list[float]:
    """The multiplier of each step ``1..total`` (see the module docstring)."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")
    if not isinstance(total, int) or total < 1:
        raise ValueError(f"total steps must be a positive int, got {total!r}")
    if not 0.0 <= final <= 1.0:
        raise ValueError(f"final fraction must be in [0, 1], got {final}")
    w = warmup_steps(warmup, total)
    out = []
    for t in range(1, total + 1):
        if t <= w:
            out.append(t / w)
            continue
        p = (t - w) / (total - w)
        if kind == "constant":
            out.append(1.0)
        elif kind == "cosine":
            out.append(final + (1 - final) * 0.5 * (1 + math.cos(math.pi * p)))
        else:
            out.append(final + (1 - final) * (1 - p))
    return out
