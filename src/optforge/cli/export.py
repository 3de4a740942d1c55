"""``optforge export``: the command-line shell over :func:`optforge.export.export`.

Registered in ``optforge.cli`` as ``app.command("export")(export_command)``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from .errors import print_error


def parse_settings(items: list[str]) -> dict[str, float]:
    """``["beta1=0.95", "wd=0.1"]`` -> ``{"beta1": 0.95, "wd": 0.1}``; precise errors."""
    out: dict[str, float] = {}
    for item in items:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"--set takes NAME=VALUE, got {item!r}")
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"--set {key}: {text.strip()!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"--set {key}: the value must be finite, got {text.strip()}")
        if key in out:
            raise ValueError(f"--set {key} given twice")
        out[key] = value
    return out


def export_command(
    source: Annotated[str, typer.Argument(
        help="A program file (path/to/rule.py), a zoo name (see `optforge zoo list`), or a "
        "search run directory (with --rank).")],
    rank: Annotated[int | None, typer.Option(
        "--rank", "-r", min=1, help="With a run directory: the rank in its hall of fame "
        "(1 = the fittest) [default: 1].")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="The file to write (default: <program name>_optimizer.py).")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", "-n",
        help="Class name (default: the zoo title or the program name in CamelCase).")] = None,
    lr: Annotated[float | None, typer.Option(
        help="Recommended learning rate: the constructor's default [default: a run's best "
        "rate, else 1e-3].")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="A recommended hyperparameter value, NAME=VALUE (repeatable): the "
        "constructor's default instead of the program's.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists.")] = False,
) -> None:
    """Write a program (a file, a zoo name, or rank N of a search run) as a standalone
    torch.optim.Optimizer file that depends only on torch."""
    from ..export import ExportError, export

    console = Console()
    try:
        path, cls = export(source, out, name, lr=lr, hyperparameters=parse_settings(set_ or []),
                           overwrite=force, return_class_name=True, rank=rank)
    except (ExportError, ValueError) as err:
        print_error(console, err)
        raise typer.Exit(2) from None
    module = path.stem if path.stem.isidentifier() else "<module>"
    console.print(f"wrote [bold]{escape(str(path))}[/bold]: class {cls}, depends only on torch",
                  highlight=False, soft_wrap=True)
    console.print(f"  from {module} import {cls}", markup=False)
    console.print(f"  opt = {cls}(model.parameters())  # defaults: the recommended values "
                  "(see its docstring)")
