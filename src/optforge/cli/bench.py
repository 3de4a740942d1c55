"""``optforge bench``: the command-line shell over :func:`~optforge.bench.run.run_bench`.

Registered in ``optforge.cli`` as ``app.command("bench")(bench_command)``. The
benchmark's modules (optuna, scipy, the trainer) load when the command runs.
Its settings make a :class:`~optforge.bench.config.BenchConfig`: ``--config FILE`` (TOML,
the same names) with the flags given on the command line over it. ``--out`` is a run
directory (run store and outputs, :mod:`optforge.bench.stored`); ``--resume RUN_DIR``
continues one with its stored settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..bench.config import PRUNERS, SAMPLERS, BenchConfig
from .errors import exit_code, interrupted, print_error, terminate_as_interrupt
from .output import ProgressLines, print_wide

MAX_ROUNDS = 3  # bench.tune.MAX_ROUNDS (widening rounds at most), spelled out: no optuna here
NOT_SETTINGS = ("config", "out", "resume", "plots", "tensorboard")


def _from_command_line(ctx: typer.Context, name: str) -> bool:
    # compared by name: typer may bring its own copy of click's ParameterSource enum
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def bench_command(
    ctx: typer.Context,
    optimizers: Annotated[str | None, typer.Option(
        "--optimizers", "-o",
        help="Comma-separated zoo names and/or program files (path/to/rule.py).")] = None,
    tasks: Annotated[str | None, typer.Option(
        "--tasks", "-t", help="Comma-separated task names; a task of your own as "
        "path/to/file.py:NAME or package.module:NAME (docs/TASKS.md).")] = None,
    trials: Annotated[int, typer.Option(
        min=1, help="Optuna trials per (optimizer, task): the equal tuning budget.")] = 20,
    seeds: Annotated[int, typer.Option(min=1, help="Seeds of the final runs.")] = 5,
    tier: Annotated[str, typer.Option(help="Task tier: tiny, small or medium.")] = "tiny",
    steps: Annotated[int | None, typer.Option(
        min=1, help="Step budget per run (default: the tier's).")] = None,
    evals: Annotated[int, typer.Option(min=1, help="Validation evaluations per run.")] = 10,
    sampler: Annotated[str, typer.Option(help=f"One of {', '.join(SAMPLERS)}.")] = "tpe",
    pruner: Annotated[str, typer.Option(help=f"One of {', '.join(PRUNERS)}.")] = "sha",
    batch: Annotated[int, typer.Option(
        min=1, help="Tuning trials trained together as replicas of one run.")] = 4,
    schedule: Annotated[str, typer.Option(
        help="Learning-rate schedule: constant, cosine or linear.")] = "cosine",
    device: Annotated[str, typer.Option(help="Torch device of every run.")] = "cpu",
    baseline: Annotated[str, typer.Option(help="Reference optimizer.")] = "adamw",
    seed: Annotated[int, typer.Option(help="Seed of the Optuna sampler.")] = 0,
    compile: Annotated[str, typer.Option(
        "--compile", help="Compiled optimizer step: auto (where an optimizer's runs on a "
        "task amortise the C build), true or false (docs/COMPILE.md).")] = "auto",
    out: Annotated[Path | None, typer.Option(
        "--out", help="The run directory (new or empty): run store, results.json, results.csv, "
        "results.txt, plots [default: runs/bench-TIMESTAMP].")] = None,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="Continue the bench run in this directory where it stopped.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="TOML file of bench settings, the names above with '_' for "
        "'-' (flags given override it).")] = None,
    plots: Annotated[bool, typer.Option(help="Write PNG plots.")] = True,
    tensorboard: Annotated[Path | None, typer.Option(
        "--tensorboard", help="Also log to this TensorBoard directory, live: tuning trials, "
        "curves, final metrics, progress (tensorboard --logdir DIR).")] = None,
) -> None:
    """Compare optimizers fairly: equal tuning budgets, several seeds, tests and speedups."""
    import sqlite3

    from ..bench.stored import create_run, open_run, run_stored
    from ..store import ReplayError, StoreError
    from .tables import results_table, scores_table

    console = Console()
    try:
        if tensorboard is not None:
            from .tblog import require

            require()  # before the run directory is made
        if resume is not None:
            given = [p.name for p in ctx.command.params
                     if p.name not in ("resume", "plots", "tensorboard")
                     and _from_command_line(ctx, p.name)]
            if given:
                raise ValueError("--resume takes the settings from the run directory; give no "
                                 f"other bench options with it (got {', '.join(given)})")
            store = open_run(resume)
        else:
            from .search import default_run_dir

            cfg = BenchConfig.from_toml(config) if config is not None else BenchConfig()
            cfg = cfg.override(**{name: value for name, value in ctx.params.items()
                                  if name not in NOT_SETTINGS
                                  and _from_command_line(ctx, name)})
            if not cfg.optimizers or not cfg.tasks:
                raise ValueError("give --optimizers and --tasks (or --resume RUN_DIR)")
            store = create_run(out or default_run_dir(kind="bench"), cfg)
    except (KeyError, ValueError, StoreError, ImportError, OSError) as err:
        print_error(console, err)
        raise typer.Exit(2) from None
    console.print(f"run directory: {escape(str(store.path))}", highlight=False)
    log = None
    if tensorboard is not None:
        from .tblog import BenchLog

        log = BenchLog(tensorboard)
    planned, base = store.meta("planned"), store.meta("planned_base")
    if planned is not None:
        console.print(f"plan: {base if base is not None else planned} batched training runs, "
                      f"up to {planned} if every tuning range widens {MAX_ROUNDS} times",
                      highlight=False)
    try:
        if console.is_terminal:
            columns = (TextColumn("[bold]{task.description}"), BarColumn(),
                       TaskProgressColumn(), TimeElapsedColumn(), TextColumn("eta"),
                       TimeRemainingColumn())
            bar = Progress(*columns, console=console, transient=False)
            job = bar.add_task("starting", total=None)

            def show(done: float, total: float, what: str) -> None:
                bar.update(job, completed=done, total=total, description=what)
        else:  # a log: plain lines (a Rich bar prints nothing there)
            bar, lines = None, ProgressLines(console, "bench", "training steps")

            def show(done: float, total: float, what: str) -> None:
                lines.update(what, done, total)

        def progress(done: float, total: float, what: str) -> None:
            show(done, total, what)
            if log is not None:
                log.progress(done, total, what)

        if bar is not None:
            bar.start()
        try:
            with terminate_as_interrupt():
                result = run_stored(store, plots=plots, progress=progress,
                                    on_entry=log.entry if log is not None else None)
        finally:
            if bar is not None:
                bar.stop()
        if log is not None:
            log.compared(result)
    except KeyboardInterrupt as err:
        print_error(console, f"{interrupted(err)}; continue with: optforge bench --resume "
                    f"{store.path}")
        raise typer.Exit(exit_code(err)) from None
    except (KeyError, ValueError, StoreError, ReplayError) as err:
        print_error(console, err)
        raise typer.Exit(2) from None
    except sqlite3.Error as err:  # the store failed: the run stops, no candidate fails for it
        print_error(console, f"the run store failed: {err}")
        raise typer.Exit(2) from None
    finally:
        store.close()
        if log is not None:
            log.close()
    baseline = result.candidates[0]["label"]
    print_wide(console, results_table(result, console.width if console.is_terminal else 120),
               scores_table(result))
    for e in result.entries:
        for edge in e.tuning.edges if e.tuning else ():
            console.print(f"[dim]{e.task}: {escape(e.optimizer)}: {escape(str(edge))}[/dim]",
                          soft_wrap=True)
    for task, info in result.tasks.items():
        bfit = info.get("baseline_fit")
        if bfit is None:
            continue
        if bfit.fit:
            f = bfit.fit
            console.print(f"[dim]{task}: {escape(baseline)} final loss vs budget fitted as "
                          f"{f['E']:.4g} + {f['A']:.4g} * s^-{f['alpha']:.3g} on budgets "
                          f"{bfit.budgets} (rms relative error {f['rel_rmse']:.1%})[/dim]")
        else:
            console.print(f"[dim]{task}: no speedup fit: {escape(bfit.error)}[/dim]")
    console.print(f"wrote {escape(', '.join(result.files.values()))} in "
                  f"{result.wall_time:.1f}s", highlight=False)
