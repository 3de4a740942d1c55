"""Command output that stays whole off a terminal: tables at their own width, progress as
plain lines.

Rich gives a console that is not a terminal (a pipe, a file, CI's log) a width of
80 columns, and a wide table then loses columns; its progress bar and live display
print nothing there. :func:`print_wide` prints tables at the width they ask for
when the output is not a terminal; :class:`ProgressLines` writes a progress line
(stage, done/planned, elapsed, ETA) when the stage changes and at most every
``every`` seconds otherwise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from rich.console import Console, RenderableType
from rich.measure import Measurement

MAX_WIDTH = 1000


def table_width(console: Console, *renderables: RenderableType) -> int:
    """The widest natural width of ``renderables`` (what they need to lose nothing)."""
    options = console.options.update_width(MAX_WIDTH)
    return max(Measurement.get(console, options, r).maximum for r in renderables)


def print_wide(console: Console, *renderables: RenderableType) -> None:
    """Print each renderable; off a terminal at its natural width (nothing is cut)."""
    for r in renderables:
        if console.is_terminal:
            console.print(r)
            continue
        width = console.width
        console.width = max(width, table_width(console, r))
        try:
            console.print(r)
        finally:
            console.width = width


def duration(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressLines:
    """Plain progress lines for logs: ``[prefix] stage  done/planned unit (p%)  elapsed  eta``.

    ``update(stage, done, planned)`` writes a line when ``stage`` changes and at most every
    ``every`` seconds otherwise; the ETA assumes the rest costs what the done part did.
    """

    def __init__(self, console: Console, prefix: str, unit: str = "", every: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.console, self.prefix, self.unit, self.every = console, prefix, unit, every
        self.clock = clock
        self.start = clock()
        self.last_time = -math.inf
        self.last_stage: str | None = None

    def line(self, stage: str, done: float, planned: float | None) -> str:
        elapsed = self.clock() - self.start
        unit = f" {self.unit}" if self.unit else ""
        if planned:
            eta = elapsed * (planned - done) / done if done > 0 else math.nan
            count = f"{done:.0f}/{planned:.0f}{unit} ({min(done / planned, 1):.0%})"
        else:
            eta, count = math.nan, f"{done:.0f}{unit}"
        return (f"[{self.prefix}] {stage}  {count}  elapsed {duration(elapsed)}  "
                f"eta {duration(eta)}")

    def update(self, stage: str, done: float, planned: float | None,
               force: bool = False) -> None:
        now = self.clock()
        if not force and stage == self.last_stage and now - self.last_time < self.every:
            return
        self.last_stage, self.last_time = stage, now
        self.console.print(self.line(stage, done, planned), markup=False, highlight=False,
                           soft_wrap=True)
