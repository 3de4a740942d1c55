"""The ``optforge`` command: a thin Typer shell over the Python API."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from . import zoo as zoo_api
from .bench.cli import bench_command
from .clierror import print_error
from .export.cli import export_command
from .report.cli import report_command
from .search.command import search_command
from .store.cli import runs_app

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Discover, verify, benchmark and ship optimizers.")
zoo_app = typer.Typer(no_args_is_help=True, help="The literature's optimizers as programs.")
app.add_typer(zoo_app, name="zoo")
app.command("bench")(bench_command)
console = Console()
app.command("search")(search_command)
app.command("export")(export_command)
app.command("report")(report_command)
app.add_typer(runs_app, name="runs")


@zoo_app.command("list")
def zoo_list(pattern: Annotated[str | None, typer.Argument(
        help="Only names matching this glob, e.g. 'adam*'.")] = None) -> None:
    """List the zoo optimizers with their reference implementations."""
    table = Table("name", "optimizer", "slots", "hyperparameters", "reference")
    for name in zoo_api.names(pattern):
        e, p = zoo_api.entry(name), zoo_api.load(name)
        hyper = ", ".join(f"{k}={v:g}" for k, v in p.hyper)
        table.add_row(name, e.title, str(len(p.slots)), hyper, e.reference)
    console.print(table)


@zoo_app.command("show")
def zoo_show(name: str) -> None:
    """Show one zoo optimizer: program, formula, citation, reference implementation."""
    from .lang.symbolic import formula

    try:
        e, p = zoo_api.entry(name), zoo_api.load(name)
    except KeyError as err:
        console.print(f"[red]{err.args[0]}[/red]")
        raise typer.Exit(2) from None
    console.print(f"[bold]{e.title}[/bold] ({name})")
    console.print(Syntax(str(p), "python", theme="ansi_dark"))
    console.print("[bold]formula[/bold]")
    console.print(formula(p))
    console.print(f"[bold]citation[/bold]  {e.citation}")
    console.print(f"[bold]reference[/bold] {e.reference}")
    if e.space:
        space = ", ".join(f"{k}: {v[0]} [{v[1]:g}, {v[2]:g}]" for k, v in e.space.items())
        console.print(f"[bold]tuning space[/bold] {space}")
    if e.notes:
        console.print(f"[bold]notes[/bold] {e.notes}")


@app.command("demo")
def demo(
    out: str = typer.Option("demo-out", help="output directory (a previous demo's is replaced)"),
    quick: bool = typer.Option(False, help="a much smaller run (seconds): a smoke test"),
) -> None:
    """The main job: a short search from AdamW and Lion into a run directory, the best
    program compared with them on held-out tasks, exported from the run, and the HTML
    report."""
    import torch

    from .demo import QUICK, DemoPlan, run_demo
    from .export import ExportError
    from .store.db import StoreError

    torch.set_num_threads(1)  # tiny models: one thread is several times faster here
    wide = console if console.is_terminal else Console(width=120)
    try:
        run_demo(out, QUICK if quick else DemoPlan(), wide)
    except (ValueError, StoreError, ExportError) as err:
        print_error(console, err)
        raise typer.Exit(2) from None


if __name__ == "__main__":  # pragma: no cover
    app()
