"""``optforge search``: the command-line shell over :class:`~optforge.search.Search`.

Register it with ``app.command("search")(search_command)``. Its options are
generated from :class:`~optforge.search.config.SearchConfig`, one flag per
field (``max_length`` <-> ``--max-length``; list fields repeat the flag:
``--init adamw --init lion``; booleans are ``--simplify-nodes/--no-simplify-nodes``),
plus ``--config FILE`` (TOML; flags override it) and ``--out DIR``.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer
from rich.console import Console
from rich.syntax import Syntax

from .config import SearchConfig
from .display import LiveDisplay
from .engine import Search
from .results import SearchResult


def write_results(result: SearchResult, config: SearchConfig, out: Path) -> list[Path]:
    """``result.json``, ``config.toml`` and ``winner_N.py`` (simplified source) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "result.json", out / "config.toml"]
    written[0].write_text(result.to_json())
    written[1].write_text(config.to_toml())
    for i, w in enumerate(result.winners, 1):
        path = out / f"winner_{i}.py"
        scores = ", ".join(f"{k} {v:+.4f}" for k, v in w.stage_fitness.items())
        held = "" if w.heldout is None else f"; held-out {w.heldout.fitness:+.4f}"
        path.write_text(f"# optforge search winner {i}: fitness {scores}; simplified "
                        f"{w.simplified_fitness:+.4f}{held}\n{w.source}")
        written.append(path)
    return written


def _run(config: Path | None, out: Path | None, **flags: Any) -> None:
    console = Console()
    given = {k: v for k, v in flags.items() if v is not None and v != [] and v != ()}
    given = {k: list(v) if isinstance(v, tuple) else v for k, v in given.items()}
    try:
        cfg = SearchConfig.from_toml(config) if config is not None else SearchConfig()
        cfg = cfg.override(**given)
        cfg.check_tasks()
    except (ValueError, KeyError, OSError) as err:
        console.print(f"[red]error:[/red] {err.args[0] if err.args else err}")
        raise typer.Exit(2) from None
    with LiveDisplay(Console(stderr=True)) as display:
        result = Search(cfg, on_progress=display.update).run()
    console.print(result.summary(sources=False))
    for i, w in enumerate(result.winners, 1):
        console.print(f"[bold]winner {i}[/bold] (fitness {w.simplified_fitness:+.4f})")
        console.print(Syntax(w.source, "python", theme="ansi_dark"))
        console.print(w.formula)
        console.print(f"LaTeX: {w.latex}")
    if out is not None:
        paths = write_results(result, cfg, out)
        console.print(f"wrote {', '.join(str(p) for p in paths)}")
    else:
        console.print_json(json.dumps(result.counters))


def _signature() -> inspect.Signature:
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter("config", kw, default=None, annotation=Annotated[
            Path | None, typer.Option("--config", "-c", help="TOML file of search options "
                                      "(flags override it).")]),
        inspect.Parameter("out", kw, default=None, annotation=Annotated[
            Path | None, typer.Option("--out", help="Directory for result.json, config.toml "
                                      "and the winners' source.")]),
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
