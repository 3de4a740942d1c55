"""The benchmark's tables on a terminal: :class:`~optforge.bench.report.TextTable` as a Rich
table (the same cells ``results.txt`` holds as plain text)."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from ..bench.report import TextTable, results_data, scores_data
from ..bench.results import BenchResult


def rich_table(data: TextTable, fold: bool = False, no_wrap: bool = False) -> Table:
    """``data`` as a Rich table; ``fold``: long cells break anywhere rather than lose text;
    ``no_wrap``: right-justified (numeric) cells stay on one line."""
    table = Table(title=escape(data.title), caption=escape(data.caption) or None,
                  caption_justify="left")
    for c in data.columns:
        options = {"overflow": "fold"} if fold else {}
        if c.min_width:
            options["min_width"] = c.min_width
        if c.right:
            table.add_column(c.header, justify="right", no_wrap=no_wrap, **options)
        else:
            table.add_column(c.header, **options)
    for section in data.sections:
        for i, row in enumerate(section):
            table.add_row(*(escape(v) for v in row), end_section=i == len(section) - 1)
    return table


def results_table(result: BenchResult, width: int = 120) -> Table:
    """One row per (task, optimizer); numbers wrap only on terminals narrower than 120."""
    return rich_table(results_data(result), fold=True, no_wrap=width >= 120)


def scores_table(result: BenchResult) -> Table:
    """AlgoPerf performance-profile score of each optimizer across the tasks."""
    return rich_table(scores_data(result))
