"""``optforge search``: the command-line shell over :class:`~optforge.search.Search`.

Register it with ``app.command("search")(search_command)``. Its options are
generated from :class:`~optforge.search.config.SearchConfig`, one flag per
field (``max_length`` <-> ``--max-length``; list fields repeat the flag:
``--init adamw --init lion``; booleans are ``--simplify-nodes/--no-simplify-nodes``),
plus ``--config FILE`` (TOML; flags override it), ``--out DIR`` (the run
directory: the run store, ``result.json``, ``config.toml``, the winners; default
``runs/search-TIMESTAMP``), ``--resume DIR``, ``--cache-from DIR`` and the
evaluator options ``--backend``, ``--workers``, ``--queue``, ``--timeout``, ``--retries``,
``--ray-address`` (docs/RUNS.md), and ``--tensorboard DIR`` (:mod:`optforge.cli.tblog`).
"""

from __future__ import annotations

import inspect
import json
import os
import sqlite3
import time
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax

from ..search.config import SearchConfig
from ..search.plan import costs, describe
from .display import LiveDisplay
from .errors import exit_code, interrupted, print_error, terminate_as_interrupt

RUN_OPTIONS = {"--resume", "--cache-from", "--backend", "--workers", "--queue", "--timeout",
               "--retries", "--ray-address", "--tensorboard"}


def default_run_dir(root: Path = Path("runs"), kind: str = "search") -> Path:
    """``runs/KIND-YYYYmmdd-HHMMSS`` (with a suffix if taken)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path, n = root / f"{kind}-{stamp}", 1
    while path.exists():
        n += 1
        path = root / f"{kind}-{stamp}-{n}"
    return path


def _open_run(config: Path | None, out: Path | None, resume: Path | None,
              given: dict[str, Any], in_flight: int | None = None):
    from ..search.stored import create_run, open_run

    if resume is not None:
        if given or config is not None or out is not None:
            raise ValueError("--resume takes the configuration from the run directory; "
                             "give no --config, --out or search options with it")
        return open_run(resume)
    cfg = SearchConfig.from_toml(config) if config is not None else SearchConfig()
    cfg = cfg.override(**given)
    # tasks, device and programs checked before the run directory exists: a bad one creates nothing
    return cfg, create_run(out or default_run_dir(), cfg, in_flight)


def planned_in_flight(backend: str, workers: int | None, queue: int | None) -> int | None:
    """The jobs in flight the backend will keep (``workers + queue``), where known before it
    starts: stored at creation, so a run killed during start-up resumes with it (a Ray
    cluster's size is only known once joined)."""
    if backend == "inline":
        return workers or 1
    if backend == "ray" and workers is None:
        return None
    from ..runtime.pool import QUEUE_PER_WORKER

    w = workers or os.cpu_count() or 1
    return w + (QUEUE_PER_WORKER * w if queue is None else queue)


def _run(config: Path | None, out: Path | None, resume: Path | None, cache_from: list[Path],
         backend: str, workers: int | None, queue: int | None, timeout: float, retries: int,
         ray_address: str | None, tensorboard: Path | None = None, **flags: Any) -> None:
    from ..runtime import make_backend
    from ..search.stored import run_stored
    from ..store import ReplayError, RunStore, StoreError

    console = Console()
    given = {k: v for k, v in flags.items() if v is not None and v != [] and v != ()}
    given = {k: list(v) if isinstance(v, tuple) else v for k, v in given.items()}
    try:
        if backend not in ("inline", "process", "ray"):
            raise ValueError(f"unknown backend {backend!r}; use inline, process or ray")
        if tensorboard is not None:
            from .tblog import require

            require()
        caches = [RunStore.open(p, readonly=True) for p in cache_from or []]
        cfg, store = _open_run(config, out, resume, given,
                               planned_in_flight(backend, workers, queue))
    except (ValueError, KeyError, OSError, StoreError, ImportError) as err:
        print_error(console, err)
        raise typer.Exit(2) from None
    console.print(f"run directory: {escape(str(store.path))}", highlight=False)
    again = f"continue with: optforge search --resume {store.path}"
    log = None
    if tensorboard is not None:
        from .tblog import SearchLog

        log = SearchLog(tensorboard)
    plan = costs(cfg)
    if store.meta("plan") is None:
        store.set_meta(plan=[c.as_dict() for c in plan])
    limit = f"; time limit {cfg.time_limit:g} s for the whole run" if cfg.time_limit else ""
    console.print(f"plan (at most{limit}):", highlight=False)
    for line in describe(plan):
        console.print(f"  {line}", highlight=False, soft_wrap=True)

    def evaluator(fitness):
        return make_backend(backend, fitness, workers, timeout, retries, ray_address, queue)

    try:
        with LiveDisplay(Console(stderr=True)) as display, terminate_as_interrupt():
            def progress(p) -> None:
                display.update(p)
                if log is not None:
                    log.progress(p)

            result, paths = run_stored(cfg, store, on_progress=progress, caches=caches,
                                       make_evaluator=evaluator)
            if log is not None:
                log.result(result)
    except KeyboardInterrupt as err:
        print_error(console, f"{interrupted(err)}; {again}")
        raise typer.Exit(exit_code(err)) from None
    except ConnectionError as err:  # e.g. no Ray cluster at --ray-address
        print_error(console, f"{err}; {again}")
        raise typer.Exit(2) from None
    except (StoreError, sqlite3.Error, ReplayError) as err:  # the store failed: stop cleanly
        print_error(console, f"the run store failed: {err}")
        raise typer.Exit(2) from None
    finally:
        store.close()
        for c in caches:
            c.close()
        if log is not None:
            log.close()
    console.print(result.summary(sources=False), markup=False)
    for i, w in enumerate(result.winners, 1):
        console.print(f"[bold]winner {i}[/bold] (fitness {w.simplified_fitness:+.4f})")
        console.print(Syntax(w.source, "python", theme="ansi_dark"))
        console.print(w.formula, markup=False)
        console.print(f"LaTeX: {w.latex}", markup=False)
    console.print(f"wrote {escape(', '.join(str(p) for p in paths))}", highlight=False)
    console.print_json(json.dumps(result.counters))


def _signature() -> inspect.Signature:
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter("config", kw, default=None, annotation=Annotated[
            Path | None, typer.Option("--config", "-c", help="TOML file of search options "
                                      "(flags override it).")]),
        inspect.Parameter("out", kw, default=None, annotation=Annotated[
            Path | None, typer.Option("--out", help="The run directory (new or empty): run "
                                      "store, result.json, config.toml, the winners' source "
                                      "[default: runs/search-TIMESTAMP].")]),
        inspect.Parameter("resume", kw, default=None, annotation=Annotated[
            Path | None, typer.Option("--resume", help="Continue the run in this directory "
                                      "exactly where it stopped.")]),
        inspect.Parameter("cache_from", kw, default=None, annotation=Annotated[
            list[Path] | None, typer.Option("--cache-from", help="Reuse the complete "
                                            "evaluations of another run (repeatable).")]),
        inspect.Parameter("backend", kw, default="process", annotation=Annotated[
            str, typer.Option("--backend", help="Evaluator: inline, process or ray.")]),
        inspect.Parameter("workers", kw, default=None, annotation=Annotated[
            int | None, typer.Option("--workers", min=1, help="Evaluations in parallel "
                                     "[default: one per core; inline: 1].")]),
        inspect.Parameter("queue", kw, default=None, annotation=Annotated[
            int | None, typer.Option("--queue", min=0, help="Jobs in flight beyond the workers, "
                                     "so a freed worker starts the next at once [default: 3 "
                                     "per worker]. A new run's search depends on workers + "
                                     "queue (stored; a resume keeps it).")]),
        inspect.Parameter("timeout", kw, default=0.0, annotation=Annotated[
            float, typer.Option("--timeout", min=0.0, help="Seconds per evaluation before it "
                                "is killed and recorded failed (0: none).")]),
        inspect.Parameter("retries", kw, default=2, annotation=Annotated[
            int, typer.Option("--retries", min=0, help="Reruns of an evaluation whose worker "
                              "died, before it is recorded failed.")]),
        inspect.Parameter("ray_address", kw, default=None, annotation=Annotated[
            str | None, typer.Option("--ray-address", help="Ray cluster: auto or HOST:PORT "
                                     "(default: a local one).")]),
        inspect.Parameter("tensorboard", kw, default=None, annotation=Annotated[
            Path | None, typer.Option("--tensorboard", help="Also log to this TensorBoard "
                                      "directory, live: fitness, cache statistics, stage "
                                      "progress, curves (tensorboard --logdir DIR).")]),
    ]
    hints = get_type_hints(SearchConfig)
    for f in fields(SearchConfig):
        flag = f.name.replace("_", "-")
        decl = f"--{flag}/--no-{flag}" if hints[f.name] is bool else f"--{flag}"
        option = typer.Option(decl, help=f"{f.metadata['help']} [config: {f.name}]",
                              show_default=False)
        params.append(inspect.Parameter(f.name, kw, default=None,
                                        annotation=Annotated[hints[f.name] | None, option]))
    return inspect.Signature(params)


def search_command(**kwargs: Any) -> None:
    """Discover update rules: regularized evolution, funnel, simplification (docs/SEARCH.md)."""
    _run(**kwargs)


search_command.__signature__ = _signature()  # type: ignore[attr-defined]
