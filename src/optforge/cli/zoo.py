"""``optforge zoo list [PATTERN]`` and ``optforge zoo show NAME``.

Register with ``app.add_typer(zoo_app, name="zoo")``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from .. import zoo as zoo_api

zoo_app = typer.Typer(no_args_is_help=True, help="The literature's optimizers as programs.")
console = Console()


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
    from ..lang.symbolic import formula

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
