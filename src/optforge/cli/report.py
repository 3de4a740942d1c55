"""``optforge report RUN_DIR [--out DIR] [--bench DIR]``: the command-line shell over
:func:`optforge.report.make_report`. Registered in ``optforge.cli``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from .errors import print_error


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A search run directory (optforge search "
                                            "--out DIR), finished or not.")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Where to write report.html and the PNG figures "
        "[default: RUN_DIR/report].")] = None,
    bench: Annotated[Path | None, typer.Option(
        "--bench", help="Also show an optforge bench output directory (its results.json).")
    ] = None,
) -> None:
    """Write an HTML report of a search run: fitness, caches, funnel, lineage with diffs,
    hall of fame and Pareto front with formulas, held-out curves (docs/REPORT.md)."""
    from ..report import make_report
    from ..store.db import StoreError

    console = Console()
    try:
        report = make_report(run_dir, out, bench)
    except (StoreError, FileNotFoundError, ValueError, OSError) as err:
        print_error(console, err)
        raise typer.Exit(2) from None
    if not report.finished:
        console.print("[yellow]note:[/yellow] the run is unfinished; the report shows what the "
                      "store holds so far")
    names = ", ".join(p.name for p in report.figures.values())
    console.print(f"wrote [bold]{escape(str(report.html))}[/bold] and {len(report.figures)} "
                  f"figures ({escape(names)})", highlight=False,
                  soft_wrap=True)  # a path is never broken over lines
