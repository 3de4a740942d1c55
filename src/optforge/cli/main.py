"""The ``optforge`` command: its sub-commands together (entry point ``optforge.cli:app``)."""

from __future__ import annotations

import typer
from rich.console import Console

from .bench import bench_command
from .errors import print_error
from .export import export_command
from .report import report_command
from .runs import runs_app
from .search import search_command
from .zoo import zoo_app

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Discover, verify, benchmark and ship optimizers.")
app.add_typer(zoo_app, name="zoo")
app.command("bench")(bench_command)
console = Console()
app.command("search")(search_command)
app.command("export")(export_command)
app.command("report")(report_command)
app.add_typer(runs_app, name="runs")


@app.command("demo")
def demo(
    out: str = typer.Option("demo-out", help="output directory (a previous demo's is replaced)"),
    quick: bool = typer.Option(False, help="a much smaller run (seconds): a smoke test"),
) -> None:
    """The main job: a short search from AdamW and Lion into a run directory, the best
    program compared with them on held-out tasks, exported from the run, and the HTML
    report."""
    import torch

    from ..export import ExportError
    from ..store.db import StoreError
    from .demo import QUICK, DemoPlan, run_demo

    torch.set_num_threads(1)  # tiny models: one thread is several times faster here
    wide = console if console.is_terminal else Console(width=120)
    try:
        run_demo(out, QUICK if quick else DemoPlan(), wide)
    except (ValueError, StoreError, ExportError) as err:
        print_error(console, err)
        raise typer.Exit(2) from None

