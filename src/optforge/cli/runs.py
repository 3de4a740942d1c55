"""``optforge runs list [ROOT]`` and ``optforge runs show RUN_DIR``.

Register with ``app.add_typer(runs_app, name="runs")``.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from ..store.db import StoreError
from ..store.summary import RunSummary, list_runs, summarize
from .errors import print_error

runs_app = typer.Typer(no_args_is_help=True, help="Run directories: list and inspect.")
console = Console()


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) if t else "?"


@runs_app.command("list")
def runs_list(root: Annotated[Path, typer.Argument(help="A run directory or a folder of "
                                                   "them.")] = Path("runs")) -> None:
    """List the runs under ROOT (default ./runs): kind, status, work done, best, time."""
    table = Table("run", "kind", "status", "created (UTC)", "done", "failed", "best",
                  "work time")
    rows = list_runs(root)
    for r in rows:
        if isinstance(r, tuple):
            table.add_row(escape(str(r[0])), "?", f"[red]unreadable: {escape(r[1])}[/red]",
                          "", "", "", "", "")
            continue
        if r.bench is not None:
            b = r.bench
            bad = sum(n for s, n in r.statuses.items() if s in ("error", "raised"))
            done = f"{r.evaluations}/{b['planned'] or '?'} runs"
            ranked = _ranked(b["scores"])
            best = f"{escape(ranked[0][0])} {ranked[0][1]:.2f}" if ranked else "-"
        else:
            bad = sum(n for s, n in r.statuses.items() if s != "ok")
            done = f"{r.evaluations} evaluations"
            best = f"{r.best[0]['fitness']:+.4f}" if r.best else "-"
        table.add_row(escape(str(r.path)), r.kind, r.status, _when(r.created), done, str(bad), best,
                      f"{r.seconds:.1f} s")
    if not rows:
        console.print(f"no runs under {escape(str(root))}")
        return
    console.print(table)


def _ranked(scores: dict | None) -> list[tuple[str, float]]:
    """Performance-profile scores, best first (NaN: no score)."""
    return sorted(((o, v) for o, v in (scores or {}).items()
                   if isinstance(v, int | float) and v == v), key=lambda x: -x[1])


def show_bench(r: RunSummary) -> None:
    b = r.bench
    s = b["settings"]
    console.print(f"optimizers: {', '.join(b['optimizers'])} (baseline {b['baseline']})",
                  markup=False)
    console.print(f"tasks: {', '.join(b['tasks'])} (tier {s['tier']}, "
                  f"{s['steps'] or 'tier default'} steps, {s['trials']} trials in batches of "
                  f"{s['batch']}, {s['seeds']} seeds, {s['sampler']}/{s['pruner']}, "
                  f"seed {s['seed']})")
    statuses = ", ".join(f"{n} {k}" for k, n in r.statuses.items()) or "none yet"
    base = b.get("planned_base")
    plan = f"{base} planned, at most {b['planned']} with every widening round" if base else (
        f"at most {b['planned'] or '?'}")
    console.print(f"training runs: {r.evaluations} done of {plan} ({statuses})")
    if r.stage and r.status != "finished":
        console.print(f"stage: {r.stage}", highlight=False)
    overhead = "" if r.store_seconds is None else f", store {r.store_seconds:.2f} s"
    console.print(f"time: {r.seconds:.1f} s training, {r.wall:.1f} s wall{overhead}")
    table = Table("task", "optimizer", "runs", "time", "status")
    fates = {f"{t}/{o}": (st if not why else f"{st}: {why}")
             for t, o, st, why in b["entries"] or []}
    for key, e in b["per_entry"].items():
        task, opt = key.split("/", 1)
        table.add_row(task, escape(opt), str(e["units"]), f"{e['seconds']:.1f} s",
                      escape(fates.get(key, "running" if r.status == "running" else "-")))
    if b["per_entry"]:
        console.print(table)
    ranked = _ranked(b["scores"])
    if ranked:
        console.print("performance-profile scores: " + ", ".join(f"{o} {v:.3f}"
                                                                 for o, v in ranked),
                      markup=False)


def show(r: RunSummary) -> None:
    console.print(f"[bold]{escape(str(r.path))}[/bold]: {r.kind} run, {r.status}, created "
                  f"{_when(r.created)} UTC, resumed {r.resumes} time(s)", highlight=False)
    if r.bench is not None:
        show_bench(r)
        return
    if r.stage:
        console.print(f"stage: {r.stage}" + (" (done)" if r.status == "finished" else ""),
                      highlight=False)
    if r.plan:
        from ..search.plan import StageCost, describe

        console.print("plan (at most):")
        for line in describe([StageCost(**c) for c in r.plan]):
            console.print(f"  {line}", highlight=False, soft_wrap=True)
    statuses = ", ".join(f"{n} {s}" for s, n in r.statuses.items()) or "none"
    console.print(f"evaluations: {r.evaluations} ({statuses})")
    overhead = "" if r.store_seconds is None else f", store {r.store_seconds:.2f} s"
    console.print(f"time: {r.seconds:.1f} s evaluating (all workers), {r.wall:.1f} s wall"
                  f"{overhead}")
    if r.counters:
        from ..search.filters import rejections_text

        console.print("counters: " + ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else
            f"{k} ({rejections_text(v) or 'none'})" if isinstance(v, dict) else f"{k} {v}"
            for k, v in r.counters.items()))
    for i, b in enumerate(r.best, 1):
        console.print(f"[bold]best {i}[/bold]: fitness {b['fitness']:+.4f} on {b['stage']}")
        console.print(Syntax(b["source"], "python", theme="ansi_dark"))


@runs_app.command("show")
def runs_show(run_dir: Path, top: Annotated[int, typer.Option(min=1, help="Best programs "
                                                               "shown.")] = 3) -> None:
    """Summary of one run: status, counts, time spent, best programs."""
    try:
        r = summarize(run_dir, top)
    except (StoreError, sqlite3.Error) as err:
        print_error(console, err)
        raise typer.Exit(2) from None
    show(r)
