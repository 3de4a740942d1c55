"""The main job: a short search, its comparison, the export and the report.

1. ``optforge search`` into a run directory (``OUT/run``: the SQLite run store,
   ``result.json``, ``config.toml``, the winners), regularized evolution from the
   zoo's AdamW and Lion on two cheap proxy tasks, on the process-pool backend.
2. The fittest program (rank 1 of the hall of fame) meets tuned AdamW and Lion
   on tasks the search never saw, through ``optforge bench`` (equal tuning
   budgets, several seeds, significance tests), into ``OUT/bench``.
3. It is exported from the run directory (``optforge export OUT/run --rank 1``)
   as a standalone ``torch.optim.Optimizer`` file, ``OUT/discovered_optimizer.py``.
4. ``optforge report OUT/run --bench OUT/bench`` writes ``OUT/report/report.html``.

The summary at the end says what was found, how it compares and where the
files are. A second demo into the same ``OUT`` replaces the first one's files
(and refuses a directory that holds anything else).
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

MARKER = ".optforge-demo"
PARTS = ("run", "bench", "report", "discovered.py", "discovered_optimizer.py")


@dataclass(frozen=True)
class DemoPlan:
    """The budget of each stage (the defaults take a few minutes on 2 cores)."""

    evaluations: int = 120
    population: int = 24
    tournament: int = 6
    init: tuple[str, ...] = ("adamw", "lion")
    search_tiers: tuple[str, ...] = ("tiny:quadratic,digits_mlp@150",)
    heldout_tasks: tuple[str, ...] = ("digits_logreg", "mnist1d_cnn")
    heldout_steps: int = 200  # the search's held-out stage and the benchmark alike
    simplify_evaluations: int = 12
    trials: int = 6
    seeds: int = 3
    backend: str = "process"  # the evaluators of optforge.runtime: process, inline
    workers: int | None = None  # process-pool workers (default: one per core)
    seed: int = 0

    def search_config(self):
        from ..search.config import SearchConfig

        return SearchConfig(
            seed=self.seed, init=list(self.init), evaluations=self.evaluations,
            population=min(self.population, self.evaluations),
            tournament=min(self.tournament, self.evaluations), tiers=list(self.search_tiers),
            heldout=f"tiny:{','.join(self.heldout_tasks)}@{self.heldout_steps}",
            simplify_top=1, simplify_evaluations=self.simplify_evaluations)

    def bench_config(self, program_file: Path):
        """The comparison: the discovered program against AdamW and Lion, held-out tasks."""
        from ..bench import BenchConfig

        return BenchConfig(["adamw", "lion", str(program_file)], self.heldout_tasks,
                           trials=self.trials, seeds=self.seeds, steps=self.heldout_steps,
                           seed=self.seed)


QUICK = DemoPlan(evaluations=8, population=6, tournament=3,
                 search_tiers=("tiny:quadratic,digits_mlp@60",), heldout_tasks=("digits_logreg",),
                 heldout_steps=60, simplify_evaluations=4, trials=2, seeds=2, backend="inline")


def prepare(out: Path) -> None:
    """``out`` new, empty, or a previous demo's (whose files are removed)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; pick another output directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ValueError(f"{out} exists and is not a demo output directory; pick another "
                             "one (--out) or remove it")
        for name in PARTS:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `optforge demo`; a new demo replaces its files\n")


def run_demo(out: str | Path = "demo-out", plan: DemoPlan = DemoPlan(),
             console: Console | None = None) -> dict:
    """Run the four stages into ``out``; returns a summary dictionary."""
    from ..bench import run_bench
    from ..export import export
    from ..export.run import resolve_run
    from ..report import make_report
    from ..runtime import make_backend
    from ..search.stored import run_search
    from .tables import results_table, scores_table

    console = console or Console()
    out = Path(out)
    prepare(out)
    t0 = time.perf_counter()
    times: dict[str, float] = {}

    console.rule("[bold]1. search (optforge search)")
    config = plan.search_config()
    run_dir = out / "run"
    console.print(f"run directory: {escape(str(run_dir))}; {plan.evaluations} evaluations from "
                  f"{', '.join(plan.init)} on {', '.join(plan.search_tiers)}", highlight=False)
    result = run_search(run_dir, config, make_evaluator=lambda fitness: make_backend(
        plan.backend, fitness, plan.workers))
    console.print(result.summary(sources=False), highlight=False)
    times["search"] = time.perf_counter() - t0

    program, origin = resolve_run(run_dir, 1)
    program_file = out / "discovered.py"
    program_file.write_text(str(program))
    best = result.best
    winner = result.winners[0] if result.winners else None

    console.rule("[bold]2. compare on held-out tasks (optforge bench)")
    t = time.perf_counter()
    bench = run_bench(plan.bench_config(program_file), out_dir=out / "bench")
    console.print(results_table(bench))
    console.print(scores_table(bench))
    times["bench"] = time.perf_counter() - t

    console.rule("[bold]3. export (optforge export OUT/run --rank 1)")
    exported, cls = export(str(run_dir), out / "discovered_optimizer.py", "Discovered", rank=1,
                           overwrite=True, return_class_name=True)
    console.print(f"wrote {escape(str(exported))}: class {cls}, lr default {origin.lr:g}"
                  if origin.lr else f"wrote {escape(str(exported))}: class {cls}",
                  highlight=False)

    console.rule("[bold]4. report (optforge report OUT/run --bench OUT/bench)")
    t = time.perf_counter()
    report = make_report(run_dir, out / "report", bench=out / "bench")
    console.print(f"wrote {escape(str(report.html))} ({len(report.figures)} figures)",
                  highlight=False)
    times["report"] = time.perf_counter() - t

    comparison = compare(bench, "discovered")
    summary = {
        "program": str(program), "search_fitness": best.fitness if best else None,
        "winner": winner is not None,
        "heldout_fitness": (winner.heldout.fitness if winner and winner.heldout else None),
        "evaluations": result.counters["evaluated"], "comparison": comparison,
        "files": {"run": str(run_dir), "report": str(report.html), "optimizer": str(exported),
                  "bench": str(out / "bench"), "program": str(program_file)},
        "seconds": time.perf_counter() - t0, "times": times,
    }
    print_summary(console, summary, program, plan)
    return summary


def compare(bench, name: str) -> list[dict]:
    """Per task: the final metric of ``name``, AdamW and Lion, and the verdict against AdamW."""
    rows = []
    for task, info in bench.tasks.items():
        entries = {e.optimizer: e for e in bench.entries if e.task == task}
        ours = entries.get(name)
        row = {"task": task, "metric": info["metric"], "higher": info["higher_is_better"],
               "means": {k: (e.final_metric.mean if e.final_metric else math.nan)
                         for k, e in entries.items()}}
        # the bench's verdict: Welch's test of the final validation loss, Holm-adjusted
        p = ours.p_holm["loss"] if ours is not None and ours.p_holm else math.nan
        row["p"] = p
        names = {"better": "better than AdamW", "worse": "worse than AdamW",
                 "no difference": "no significant difference from AdamW",
                 "tie": "tied with AdamW", "clipped": "no verdict (a clipped tuning range)",
                 "n/a": "no verdict (the test is undefined)"}
        if ours is None or ours.status != "ok" or ours.verdict is None:
            row["verdict"] = "failed"
        else:
            row["verdict"] = names[ours.verdict]
        row["speedup"] = str(ours.speedup) if ours is not None and ours.speedup else "-"
        rows.append(row)
    return rows


def print_summary(console: Console, s: dict, program, plan: DemoPlan) -> None:
    from ..lang.symbolic import formula

    console.rule("[bold]summary")
    fit = s["search_fitness"]
    how = ("a funnel winner: its score on the search tasks beats tuned AdamW" if s["winner"]
           else "no program beat tuned AdamW on the search tasks; this one came closest")
    console.print(f"[bold]found[/bold]: rank 1 of the hall of fame after {s['evaluations']} "
                  f"evaluations from {', '.join(plan.init)}; search fitness "
                  f"{fit:+.4f} = ln(AdamW loss / its loss) on {', '.join(plan.search_tiers)}"
                  f"; {how}", highlight=False)
    if s["heldout_fitness"] is not None:
        console.print(f"  the search's own held-out check (simplified winner vs tuned AdamW): "
                      f"{s['heldout_fitness']:+.4f}", highlight=False)
    console.print(str(program).rstrip(), highlight=False)
    console.print(formula(program), highlight=False)
    console.print(f"[bold]how it compares[/bold] (optforge bench, {plan.trials} tuning trials "
                  f"each, {plan.seeds} seeds, {plan.heldout_steps} steps, tasks the search "
                  "never saw):")
    for r in s["comparison"]:
        arrow = "higher is better" if r["higher"] else "lower is better"
        means = ", ".join(f"{k} {v:.4f}" for k, v in r["means"].items())
        console.print(f"  {r['task']} ({r['metric']}, {arrow}): {means}; p (val loss) vs AdamW "
                      f"{r['p']:.3f}; speedup {r['speedup']}: [bold]{r['verdict']}[/bold]",
                      highlight=False)
    f = s["files"]
    console.print("[bold]files[/bold]:")
    for label, key in (("report (open in a browser)", "report"),
                       ("exported optimizer", "optimizer"), ("run directory", "run"),
                       ("benchmark", "bench"), ("program", "program")):
        console.print(f"  {label:27s} {f[key]}", highlight=False)
    t = s["times"]
    console.print(f"done in {s['seconds']:.0f} s (search {t['search']:.0f} s, bench "
                  f"{t['bench']:.0f} s, report {t['report']:.0f} s)", highlight=False)
