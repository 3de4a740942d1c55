"""The search experiments of docs/EXPERIMENTS.md: search, then an honest comparison.

    python experiments/run.py rediscovery    # from SGD alone, against tuned SGD + momentum
    python experiments/run.py discovery      # from AdamW, against tuned AdamW
    python experiments/run.py discovery2     # the same, evolving on the small tier
    python experiments/run.py transfer       # three suites, robust fitness, filters, islands;
                                             # compared on the test suite on final val loss

Each experiment is three steps, all into ``experiments/runs/NAME/`` (a run
directory; run the command again to resume a killed search or bench):

1. ``optforge search --config experiments/NAME.toml --out experiments/runs/NAME``.
2. The best program (with a selection suite: the first evolved program that survived
   it, simplified; when none did, there is nothing to compare: ``summary.md`` lists the
   programs promoted to selection and their scores, and ``--fallback`` benches the best
   on selection anyway; without one: the first funnel winner, else the fittest program
   on the costliest funnel tier any candidate reached) is written to
   ``found.py`` with its tuning space: the learning rate over the baseline's own
   bench range times the ratio of its best rates to the baseline's on the first
   tier's tasks (``lr_ratio``: the same width; since session 6, before it: a tenth
   of its smallest to ten times its largest search rate); the
   hyperparameters the baseline tunes too over the baseline's ranges; the rest by
   the default rule (``found_space``).
3. ``optforge bench`` re-tunes it and the baseline with equal budgets on
   held-out tasks the search never trained on, runs ``--seeds`` final seeds
   and reports Welch's t-test on the final metric.

``summary.md`` then holds the search's efficiency (evaluations per hour,
skips per cache, share of worker time spent training), the program and the
comparison table.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from optforge.bench import BenchConfig, create_run, resume_bench
from optforge.bench.candidates import resolve
from optforge.lang.ir import Program
from optforge.lang.symbolic import formula
from optforge.search.filters import rejections_note
from optforge.store.db import FILE, RunStore

HERE = Path(__file__).resolve().parent
HELD_OUT = ("digits_ae", "mnist1d_cnn", "digits_logreg", "adding_rnn")
TEST_SUITE = ("digits_cnn", "tabular_mlp", "chargru", "regression_mlp")  # transfer's test suite


@dataclass(frozen=True)
class Experiment:
    name: str
    baseline: str  # the tuned optimizer to beat (zoo name)
    tasks: tuple[str, ...] = HELD_OUT  # bench tasks: none of them seen by the search
    trials: int = 20  # equal Optuna budget per (optimizer, task)
    queue: int | None = None  # jobs in flight beyond the workers (None: the default)
    scaling: tuple[float, ...] | None = None  # the bench's baseline budgets (None: default)


# the rediscovery run was made before the queue existed: 2 workers, 2 jobs in flight
EXPERIMENTS = {e.name: e for e in (Experiment("rediscovery", "momentum", queue=0),
                                   Experiment("discovery", "adamw"),
                                   Experiment("discovery2", "adamw"),
                                   Experiment("transfer", "adamw", TEST_SUITE, trials=64,
                                              scaling=(0.5, 1.0)))}


def search(exp: Experiment, run_dir: Path, workers: int) -> float:
    """Run (or resume, or skip if finished) the search; its wall seconds."""
    cmd = [str(Path(sys.executable).parent / "optforge"), "search", "--workers", str(workers)]
    if (run_dir / FILE).exists():
        with RunStore.open(run_dir, readonly=True) as store:
            if store.meta("status") == "finished" and (run_dir / "result.json").exists():
                print(f"{run_dir}: search finished, reusing it")
                return 0.0
        cmd += ["--resume", str(run_dir)]
    else:
        cmd += ["--config", str(HERE / f"{exp.name}.toml"), "--out", str(run_dir)]
        if exp.queue is not None:
            cmd += ["--queue", str(exp.queue)]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def candidates(result: dict) -> dict[int, dict]:
    """The search's hall of fame and MAP-Elites archive by candidate id."""
    return {c["id"]: c for c in result["hall_of_fame"] + result.get("archive", [])}


def pick(result: dict, run_dir: Path, fallback: bool = False
         ) -> tuple[Program, str, float, list[tuple[str, dict[str, float]]]] | None:
    """(program, how it was chosen, its search fitness, the best learning rates the search
    found for it: ``(stage, {task: rate})`` per evaluation, never the test suite's); None
    when a selection suite was configured and no evolved program survived it, unless
    ``fallback`` (then the evolved program best on the selection suite)."""
    tiers = [f"tier{i}" for i in range(len(result["config"]["tiers"]))]
    pool = candidates(result)
    selection = bool(result["config"].get("selection"))
    # with a selection suite, an evolved program (never an unchanged warm start) that the
    # selection suite ranks best: the first such winner, else (fallback) the best such
    # selection score
    evolved = [f for f in result["funnel"] if f["stage"] == "selection"
               and pool.get(f["id"], {}).get("mutation") != "init"]
    winners = [w for w in result["winners"] if w["candidate"]["mutation"] != "init"]
    if evolved and winners:
        w = winners[0]
        program, how = Program.parse(w["source"]), "selection survivor 1 (evolved), simplified"
        sf = w["stage_fitness"]  # the simplified program's own score where it changed
        fitness = sf.get("selection (simplified)", sf["selection"])
        hashes = {w["candidate"]["hash"], program.hash}
    elif selection and not fallback:
        return None
    elif evolved:
        best = max(evolved, key=lambda f: f["fitness"])
        c = pool[best["id"]]
        program, fitness, hashes = Program.parse(c["source"]), best["fitness"], {c["hash"]}
        how = "no evolved selection survivor: the evolved program best on the selection suite"
    elif result["winners"] and not selection:
        w = result["winners"][0]
        program, how = Program.parse(w["source"]), "funnel winner 1, simplified"
        fitness, hashes = w["simplified_fitness"], {w["candidate"]["hash"], Program.parse(
            w["source"]).hash}
    else:  # no survivor: the fittest on the costliest tier any candidate reached
        on_tiers = [f for f in result["funnel"] if f["stage"] in tiers and (
            not selection or
            pool.get(f["id"], {}).get("mutation") != "init")]
        last = max(on_tiers, key=lambda f: tiers.index(f["stage"]))["stage"]
        best = max((f for f in on_tiers if f["stage"] == last), key=lambda f: f["fitness"])
        c = pool[best["id"]]
        rank = next((i for i, x in enumerate(result["hall_of_fame"], 1) if x["id"] == c["id"]),
                    None)
        program, fitness = Program.parse(c["source"]), best["fitness"]
        how = f"no funnel survivor: the fittest on {last}, " + (
            f"hall of fame rank {rank}" if rank else "a MAP-Elites elite")
        hashes = {c["hash"]}
    with RunStore.open(run_dir, readonly=True) as store:  # never the test suite's rates
        rates = [(stage, ev.best_lr) for _, _, h, stage, *_, ev, _ in store.evaluations()
                 if h in hashes and stage != "heldout"]
    # a program answered by the behavioural cache has no evaluation of its own on that
    # stage in the store: its recorded (twin's) evolution evaluation in result.json holds them
    recorded = [*pool.values(), *(w["candidate"] for w in result["winners"])]
    rates += [("tier0", (c.get("evaluation") or {}).get("best_lr", {})) for c in recorded
              if c["hash"] in hashes]
    return program, how, float(fitness), rates


def lr_ratio(result: dict, rates: list[tuple[str, dict[str, float]]]) -> float:
    """Where the search put the found program's rates against the tuned baseline's: the
    geometric mean, over the first tier's tasks, of its best rate (geometric mean over its
    evaluations there) over the baseline's best rate on the same task (``result.json``'s
    ``baselines``, the first tier's, keyed ``task/tier/steps``)."""
    size = result["config"]["tiers"][0].partition(":")[0]
    base: dict[str, list[float]] = {}
    for key, b in result["baselines"].items():
        task, tier, _ = key.split("/")
        if tier == size:
            base.setdefault(task, []).append(b["lr"])
    logs: dict[str, list[float]] = {}
    for stage, best in rates:
        for task, lr in best.items():
            if stage == "tier0" and len(base.get(task, ())) == 1:
                logs.setdefault(task, []).append(math.log(lr / base[task][0]))
    if not logs:
        raise ValueError("no first-tier rates to compare with the baseline's")
    return math.exp(float(np.mean([np.mean(v) for v in logs.values()])))


def found_space(program: Program, ratio: float, baseline: str) -> list[str]:
    """The found program's ``# space:`` lines: ``lr`` over the baseline's own bench range
    times ``ratio`` (:func:`lr_ratio`: as wide as the baseline's, moved to where the search
    found the program's rates relative to the baseline's); every other hyperparameter that the
    baseline tunes too (the same name: ``wd``, ``beta1``, ``beta2``) over the baseline's own
    range, so both sides tune the same knobs over the same ranges (a weight decay that a warm
    start had switched off, ``wd = 0``, is tuned like the baseline's; a range that leaves out
    the program's own value is widened by the bench's edge rule if the best lies at its edge);
    the rest by the bench's default rule (docs/BENCH.md)."""
    shared = resolve(baseline).space
    lr = shared["lr"]
    lines = [f'# space: lr = ["{lr.kind}", {lr.low * ratio:.3g}, {lr.high * ratio:.3g}]']
    lines += [f'# space: {name} = ["{d.kind}", {d.low!r}, {d.high!r}]'
              for name, d in shared.items() if name != "lr" and name in program.hyperparameters]
    return lines


def write_found(program: Program, ratio: float, path: Path, baseline: str) -> None:
    path.write_text("\n".join(found_space(program, ratio, baseline)) + f"\n{program}")


def efficiency(run_dir: Path, workers: int) -> dict:
    """Evaluations per hour, cache skips and the share of worker time spent training."""
    with RunStore.open(run_dir, readonly=True) as store:
        counters = store.meta("counters", {}) or {}
        events = store.events()
        # (seconds, finished, replica-steps trained)
        timed = [(row[7], row[9], row[8].cost) for row in store.evaluations()]
    t0 = min(t for t, kind, _ in events if kind == "start")
    funnel = min((t for t, kind, _ in events if kind == "phase"), default=None)
    t1 = max(t for t, _, _ in events)
    evo = [(s, cost) for s, finished, cost in timed if finished <= (funnel or t1)]
    n_evo, s_evo = len(evo), sum(s for s, _ in evo)
    n_all, s_all = len(timed), sum(s for s, _, _ in timed)
    evo_wall = (funnel or t1) - t0
    children = counters["generated"] - counters["invalid"]
    return {
        "evaluations": n_all, "wall": t1 - t0, "evolution_evaluations": n_evo,
        "evolution_wall": evo_wall, "evaluations_per_hour": 3600 * n_evo / evo_wall,
        # the configuration-free rate: replica-steps trained per hour (an evaluation's cost)
        "replica_steps_per_hour": 3600 * sum(c for _, c in evo) / evo_wall,
        "valid_children": children,
        "structural_skips": counters["structural"] / children,
        "behavioural_skips": counters["behavioural"] / children,
        "training_share": s_evo / (evo_wall * workers),
        "training_share_all": s_all / ((t1 - t0) * workers), "workers": workers,
        "counters": counters,
    }


def filtered(counters: dict) -> str:
    """`` (N by the invariance filters: per filter)`` for a summary line ('' for none)."""
    note = rejections_note(counters)
    return f" ({note})" if note else ""


def bench_table(bench, baseline: str, found: str) -> tuple[list[str], int, int]:
    rows = ["| task | metric | " + baseline + " (mean ± 95% CI) | found (mean ± 95% CI) | "
            "Welch p | better |", "|---|---|---:|---:|---:|---|"]
    wins = significant = 0
    for task, info in bench.tasks.items():
        b, f = bench.entry(baseline, task), bench.entry(found, task)
        up = info["higher_is_better"]

        def cell(e):
            s = e.final_metric
            return "failed" if s is None else f"{s.mean:.4g} ± {(s.high - s.low) / 2:.2g}"

        better = (f.final_metric is not None and b.final_metric is not None
                  and (f.final_metric.mean > b.final_metric.mean) == up)
        p = f.ttest.pvalue if f.ttest is not None else math.nan
        wins += better
        significant += better and p < 0.05
        rows.append(f"| {task} | {info['metric']} ({'higher' if up else 'lower'} is better) | "
                    f"{cell(b)} | {cell(f)} | {p:.2g} | {'yes' if better else 'no'} |")
    return rows, wins, significant


def loss_table(bench, baseline: str, found: str) -> tuple[list[str], int, int]:
    """Final validation loss (the search's objective) per test task: mean ± 95% CI over the
    seeds and Welch's t-test (scipy), found against the baseline."""
    from scipy import stats

    rows = ["| task | " + baseline + " final val loss | found final val loss | ratio | "
            "Welch p | verdict |", "|---|---:|---:|---:|---:|---|"]
    wins = worse = 0
    for task in bench.tasks:
        b, f = bench.entry(baseline, task), bench.entry(found, task)

        def finals(e):
            return [c[-1] for c, st in zip(e.loss_curves, e.seed_status, strict=True)
                    if st == "ok"]

        xb, xf = finals(b), finals(f)
        if len(xb) < 2 or len(xf) < 2:
            rows.append(f"| {task} | {len(xb)} seeds ok | {len(xf)} seeds ok | | | failed |")
            worse += len(xf) < len(xb)
            continue

        def cell(x):
            m, h = float(np.mean(x)), float(stats.t.ppf(0.975, len(x) - 1) * stats.sem(x))
            return f"{m:.4g} ± {h:.2g}"

        p = float(stats.ttest_ind(xf, xb, equal_var=False).pvalue)
        ratio = float(np.mean(xf) / np.mean(xb))
        better, sig = ratio < 1, p < 0.05
        wins += better
        worse += (not better) and sig
        verdict = ("better" if better else "worse") + (" (p < 0.05)" if sig else "")
        rows.append(f"| {task} | {cell(xb)} | {cell(xf)} | {ratio:.3f} | {p:.2g} | {verdict} |")
    return rows, wins, worse


def loss_section(bench, exp: Experiment) -> list[str]:
    rows, wins, worse = loss_table(bench, exp.baseline, "found")
    return ["On the final validation loss (the search's objective; the target: lower than "
            f"tuned {exp.baseline} on at least 3 of {len(exp.tasks)} test tasks and "
            "significantly worse on none):", "", *rows, "",
            f"Lower loss on **{wins} of {len(exp.tasks)}**; significantly worse on "
            f"**{worse}**.", ""]


def selection_table(result: dict, run_dir: Path) -> list[str]:
    """Every program promoted to the selection suite, best first: how it arose, its fitness on
    the evolution suite and on the selection suite, and its score on each selection task,
    ``ln(baseline loss / its loss)`` (the store's selection evaluations)."""
    pool = candidates(result)
    with RunStore.open(run_dir, readonly=True) as store:
        scores = {h: ev.scores for _, _, h, stage, *_, ev, _ in store.evaluations()
                  if stage == "selection"}
    tasks = sorted({t for s in scores.values() for t in s})
    rows = ["| id | mutation | evolution fitness | selection fitness | "
            + " | ".join(tasks) + " |", "|---|---|---:|---:|" + "---:|" * len(tasks)]
    for f in sorted((f for f in result["funnel"] if f["stage"] == "selection"),
                    key=lambda f: -f["fitness"]):
        c = pool.get(f["id"], {})
        own = scores.get(c.get("hash"), {})
        cells = [f"{own[t]:+.3f}" if t in own else "(twin)" for t in tasks]
        rows.append(f"| {f['id']} | {c.get('mutation', '?')} | {c.get('fitness', math.nan):+.3f}"
                    f" | {f['fitness']:+.3f} | " + " | ".join(cells) + " |")
    return rows


def no_survivor(exp: Experiment, result: dict, run_dir: Path, eff: dict) -> str:
    """summary.md for a search in which no evolved program survived selection: nothing to
    compare on the test suite (``--fallback`` benches the best on selection anyway)."""
    threshold = result["config"]["promote_threshold"]
    return "\n".join([
        f"## {exp.name}: no evolved program survived selection", "",
        f"Command: `python experiments/run.py {exp.name}` (config `experiments/{exp.name}.toml`).",
        "", search_line(eff), "",
        f"No evolved program beat tuned {exp.baseline} on the selection suite "
        f"(`{result['config']['selection']}`) by the promotion threshold ({threshold:+g} = "
        f"ln(baseline loss / its loss), aggregated by `{result['config']['aggregate']}`), so "
        "there is no found program and no test-suite comparison. The programs promoted to "
        "selection (score per selection task; `(twin)`: answered by the behavioural cache):", "",
        *selection_table(result, run_dir), ""])


def search_line(eff: dict) -> str:
    c = eff["counters"]
    return (
        f"Search: {eff['evaluations']} evaluations in {eff['wall'] / 60:.1f} min wall "
        f"({eff['workers']} workers); evolution {eff['evolution_evaluations']} evaluations in "
        f"{eff['evolution_wall'] / 60:.1f} min = **{eff['evaluations_per_hour']:.0f} "
        f"evaluations/hour**. Children: {c['generated']} generated, {c['invalid']} invalid "
        f"draws{filtered(c)}, {eff['valid_children']} valid: "
        f"**{100 * eff['structural_skips']:.1f}% skipped by the structural cache, "
        f"{100 * eff['behavioural_skips']:.1f}% by the behavioural cache**; "
        f"{c['hurdle_stopped']} stopped by hurdles, {c['diverged']} diverged. "
        f"Worker time spent training: **{100 * eff['training_share']:.1f}%** of "
        f"workers x wall during evolution ({100 * eff['training_share_all']:.1f}% over the "
        "whole search).")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=sorted(EXPERIMENTS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--root", type=Path, default=HERE / "runs")
    ap.add_argument("--fallback", action="store_true",
                    help="with no selection survivor, bench the best on selection anyway")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # the bench's tiny models: one thread is faster (as the CLI's)
    exp = EXPERIMENTS[args.name]
    run_dir = args.root / exp.name
    search(exp, run_dir, args.workers)
    result = json.loads((run_dir / "result.json").read_text())
    picked = pick(result, run_dir, args.fallback)
    if picked is None:
        eff = efficiency(run_dir, args.workers)
        text = no_survivor(exp, result, run_dir, eff)
        (run_dir / "summary.md").write_text(text)
        (run_dir / "efficiency.json").write_text(json.dumps(eff, indent=1))
        print(text)
        return
    program, how, fitness, rates = picked
    ratio = lr_ratio(result, rates)
    lrs = [lr for _, best in rates for lr in best.values()]
    program = Program("found", program.params, program.hyper, program.body, program.returns,
                      program.doc)
    found = run_dir / "found.py"
    if not found.exists():  # the bench run keeps its own copy; never rewrite under it
        write_found(program, ratio, found, exp.baseline)
    trials = args.trials or exp.trials
    start = time.perf_counter()
    bench_dir = run_dir / "bench"
    if not (bench_dir / FILE).exists():  # a new bench run (a killed one resumes)
        extra = {} if exp.scaling is None else {"scaling": list(exp.scaling)}
        config = BenchConfig(optimizers=[exp.baseline, str(found)], tasks=list(exp.tasks),
                             trials=trials, seeds=args.seeds, baseline=exp.baseline, **extra)
        create_run(bench_dir, config).close()
    bench = resume_bench(bench_dir)
    bench_seconds = time.perf_counter() - start
    eff = efficiency(run_dir, args.workers)
    rows, wins, significant = bench_table(bench, exp.baseline, "found")
    text = "\n".join([
        f"## {exp.name}: found vs tuned {exp.baseline}", "",
        f"Command: `python experiments/run.py {exp.name}` (config `experiments/{exp.name}.toml`).",
        "", search_line(eff), "",
        f"Found ({how}; search fitness {fitness:+.4f} = ln(baseline loss / its loss), "
        f"aggregated over the tier's tasks; best search learning rates {min(lrs):.3g} to "
        f"{max(lrs):.3g}, {ratio:.3g}x the baseline's on the first tier's tasks):", "",
        "```python", str(program).rstrip(), "```", "",
        f"Update: `{formula(program)}`", "",
        f"Held-out comparison (`optforge bench`, {trials} Optuna trials each, {args.seeds} "
        f"final seeds, tier tiny; {bench_seconds / 60:.1f} min):", "",
        *rows, "",
        f"Found beats tuned {exp.baseline} on **{wins} of {len(exp.tasks)}** held-out tasks "
        f"({significant} with p < 0.05).", "",
        *loss_section(bench, exp)])
    (run_dir / "summary.md").write_text(text)
    (run_dir / "efficiency.json").write_text(json.dumps(eff, indent=1))
    print(text)


if __name__ == "__main__":
    main()
