"""``optforge runs list [ROOT]`` and ``optforge runs show RUN_DIR``.

Register with ``app.add_typer(runs_app, name="runs")``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from .db import StoreError
from .summary import RunSummary, list_runs, summarize

runs_app = typer.Typer(no_args_is_help=True, help="Run directories: list and inspect.")
console = Console()


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) if t else "?"


@runs_app.command("list")
def runs_list(root: Annotated[Path, typer.Argument(help="A run directory or a folder of "
                                                   "them.")] = Path("runs")) -> None:
    """List the runs under ROOT (default ./runs): kind, status, evaluations, best, time."""
    table = Table("run", "kind", "status", "created (UTC)", "evaluations", "failed", "best",
                  "eval time")
    rows = list_runs(root)
    for r in rows:
        if isinstance(r, tuple):
            table.add_row(str(r[0]), "?", f"[red]{r[1]}[/red]", "", "", "", "", "")
            continue
        bad = sum(n for s, n in r.statuses.items() if s != "ok")
        best = f"{r.best[0]['fitness']:+.4f}" if r.best else "-"
        table.add_row(str(r.path), r.kind, r.status, _when(r.created), str(r.evaluations),
                      str(bad), best, f"{r.seconds:.1f} s")
    if not rows:
        console.print(f"no runs under {root}")
        return
    console.print(table)


def show(r: RunSummary) -> None:
    console.print(f"[bold]{r.path}[/bold]: {r.kind} run, {r.status}, created {_when(r.created)} "
                  f"UTC, resumed {r.resumes} time(s)")
    statuses = ", ".join(f"{n} {s}" for s, n in r.statuses.items()) or "none"
    console.print(f"evaluations: {r.evaluations} ({statuses})")
    overhead = "" if r.store_seconds is None else f", store {r.store_seconds:.2f} s"
    console.print(f"time: {r.seconds:.1f} s evaluating (all workers), {r.wall:.1f} s wall"
                  f"{overhead}")
    if r.counters:
        console.print("counters: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float)
                                                else f"{k} {v}" for k, v in r.counters.items()))
    for i, b in enumerate(r.best, 1):
        console.print(f"[bold]best {i}[/bold]: fitness {b['fitness']:+.4f} on {b['stage']}")
        console.print(Syntax(b["source"], "python", theme="ansi_dark"))


@runs_app.command("show")
def runs_show(run_dir: Path, top: Annotated[int, typer.Option(min=1, help="Best programs "
                                                               "shown.")] = 3) -> None:
    """Summary of one run: status, counts, time spent, best programs."""
    try:
        r = summarize(run_dir, top)
    except StoreError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    show(r)
