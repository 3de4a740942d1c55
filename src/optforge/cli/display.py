"""A Rich live display of a running search; plain progress lines when output is not a
terminal (stage, evaluations done and planned, elapsed, ETA).

Usage::

    with LiveDisplay() as display:
        result = Search(config, on_progress=display.update).run()
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from ..search.evolution import Progress
from ..search.filters import rejections_text
from .output import ProgressLines, duration


def render(p: Progress) -> Table:
    """The display's table for one progress snapshot."""
    c = p.counters
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    done = min(c.evaluated, p.budget)
    bar = Table.grid(padding=(0, 1))
    bar.add_row(ProgressBar(total=p.budget, completed=done, width=30), f"{c.evaluated}/{p.budget}")
    table.add_row("phase", p.phase)
    table.add_row("evaluations", bar)
    table.add_row("best fitness", f"{p.best:+.4f}" if math.isfinite(p.best) else "-")
    table.add_row("cache skip rate", f"{c.skip_rate:.0%} ({c.structural} structural, "
                                     f"{c.behavioural} behavioural of {c.generated} generated, "
                                     f"{c.invalid} invalid)")
    if c.filtered:
        table.add_row("filtered", f"{c.filtered} ({rejections_text(c.filtered_by)})")
    table.add_row("hurdles / diverged", f"{c.hurdle_stopped} / {c.diverged}")
    table.add_row("promotions", str(c.promotions))
    table.add_row("elapsed / ETA", f"{duration(p.elapsed)} / {duration(p.eta)}")
    return table


class LiveDisplay:
    """Shows :class:`Progress` snapshots live when ``enabled`` (default: whether the
    console is a terminal), else as plain lines every ``every`` seconds and at each new
    phase (evolution counts evaluations of its budget; later phases their own)."""

    def __init__(self, console: Console | None = None, enabled: bool | None = None,
                 every: float = 30.0):
        self.console = console or Console(stderr=True)
        self.enabled = self.console.is_terminal if enabled is None else enabled
        self.last: Progress | None = None
        self._live: Live | None = None
        self._lines = None if self.enabled else ProgressLines(self.console, "search",
                                                              "evaluations", every)

    def __enter__(self) -> LiveDisplay:
        if self.enabled:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        return self

    def update(self, progress: Progress) -> None:
        self.last = progress
        if self._live is not None:
            self._live.update(render(progress))
        elif self._lines is not None:
            evolving = progress.phase == "evolution"
            self._lines.update(progress.phase, progress.counters.evaluated,
                               progress.budget if evolving else None)

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
