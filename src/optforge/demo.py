"""The main job: a short search, its comparison, and the export of what it found.

1. ``optforge search`` from the AdamW and Lion programs on cheap proxy tasks
   (the noisy quadratic and the digits MLP), a few dozen evaluations.
2. The best program (a funnel winner if there is one, else the fittest
   program of the hall of fame) meets AdamW and Lion on tasks the search never
   saw, through ``optforge bench`` with equal tuning budgets and several seeds.
3. The program is exported as a standalone ``torch.optim.Optimizer`` file.

Everything lands in one output directory; the summary at the end says what
was found, how it compares and where the files are.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from .bench.report import results_table, scores_table
from .bench.run import run_bench
from .export import export_source
from .lang.ir import Program
from .search import Search
from .search.command import write_results
from .search.config import SearchConfig


@dataclass(frozen=True)
class DemoPlan:
    """The budget of each stage (the defaults fit in a few minutes on 2 cores)."""

    evaluations: int = 40
    search_tiers: tuple[str, ...] = ("tiny:quadratic,digits_mlp@150",)
    heldout_tasks: tuple[str, ...] = ("digits_logreg", "mnist1d_cnn")
    trials: int = 6
    seeds: int = 3
    steps: int = 200
    seed: int = 0


QUICK = DemoPlan(evaluations=8, heldout_tasks=("digits_logreg",), trials=2, seeds=2, steps=60)


def run_demo(out: str | Path = "demo-out", plan: DemoPlan = DemoPlan(),
             console: Console | None = None) -> dict:
    """Run the three stages into ``out``; returns a summary dictionary."""
    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    console.rule("[bold]1. search")
    config = SearchConfig(
        seed=plan.seed, init=["adamw", "lion"], evaluations=plan.evaluations,
        population=min(16, plan.evaluations), tournament=min(4, plan.evaluations),
        tiers=list(plan.search_tiers), heldout="", simplify_top=1, simplify_evaluations=10,
    )
    result = Search(config).run()
    write_results(result, config, out / "search")
    console.print(result.summary(sources=False))
    if result.winners:
        program, how = Program.parse(result.winners[0].source), "funnel winner, simplified"
        fitness = result.winners[0].simplified_fitness
    else:
        program, how = result.best.program, "fittest program (no funnel winner)"
        fitness = result.best.fitness
    program = _named(program, "found")
    program_file = out / "found.py"
    program_file.write_text(str(program))

    console.rule("[bold]2. compare on held-out tasks")
    bench = run_bench(["adamw", "lion", str(program_file)], list(plan.heldout_tasks),
                      trials=plan.trials, seeds=plan.seeds, steps=plan.steps, seed=plan.seed,
                      out_dir=out / "bench")
    console.print(results_table(bench))
    console.print(scores_table(bench))

    console.rule("[bold]3. export")
    exported = out / "found_optimizer.py"
    exported.write_text(export_source(program, "FoundOptimizer"))

    summary = {
        "program": str(program), "how": how, "search_fitness": fitness,
        "evaluations": result.counters["evaluated"], "files": {
            "search": str(out / "search"), "program": str(program_file),
            "bench": str(out / "bench"), "optimizer": str(exported)},
        "seconds": time.perf_counter() - t0,
    }
    console.rule("[bold]summary")
    console.print(f"found ({how}, search fitness {fitness:+.4f} against tuned AdamW, "
                  f"{summary['evaluations']} evaluations):")
    console.print(str(program))
    console.print(f"files: {out}/ (search/, found.py, bench/, found_optimizer.py); "
                  f"{summary['seconds']:.0f} s")
    return summary


def _named(program: Program, name: str) -> Program:
    return Program(name, program.params, program.hyper, program.body, program.returns, program.doc)
