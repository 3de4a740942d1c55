"""Seconds per search evaluation, this checkout against an earlier revision, side by side.

One evaluation is what a search worker computes for one candidate: the
``TrainerFitness`` of a configuration's first evolution tier (by default the
transfer configuration's, ``experiments/transfer.toml``: seven tiny tasks at 150
steps, 8 learning rates x 2 task seeds = 16 replicas per task), complete (no
hurdle stops), one torch thread, as workers run. Each version runs in its own
long-lived process (a change to process-wide settings, such as the heap's,
must not leak into the other): ``before`` imports the revision's ``src/optforge``
(extracted with ``git archive``), ``this`` the checkout's. Both first tune the
baseline (warm-up), then evaluate the same zoo programs in turn, one evaluation
at a time, the order of the two versions flipping every block, so that the
machine's load hits both alike.

Reported per program and over all of them: the median over blocks of ``this / before``
with the 25th-75th percentile range (below 1: this checkout is faster), for wall-clock
seconds and for the process's CPU seconds (user + system: page faults count there;
on a loaded machine the steadier of the two), and whether the two versions computed
the same evaluation (fitness, losses, scores, best rates and curves compared
exactly, as floats).

Run::

    nice -n 19 .venv/bin/python benchmarks/bench_evaluation.py --before 69845d9 \
        --programs adamw,nadam,lion --blocks 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(config: str) -> None:  # pragma: no cover - runs in a subprocess
    """Evaluate the program named on each stdin line; one JSON line per evaluation."""
    import torch

    from optforge import zoo
    from optforge.search.config import SearchConfig
    from optforge.search.engine import Search

    torch.set_num_threads(1)
    fitness = Search(SearchConfig.from_toml(config)).build_fitness()
    stage = "tier0"
    base = {t: fitness.baseline(stage, t).final for t in fitness.stages[stage].tasks}
    print(json.dumps({"baseline": base}), flush=True)
    for line in sys.stdin:
        program = zoo.load(line.strip())
        start, cpu = time.perf_counter(), time.process_time()
        ev = fitness.evaluate(program, stage)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        result = {k: getattr(ev, k) for k in ("fitness", "losses", "scores", "best_lr",
                                              "curves", "lr_width")}
        print(json.dumps({"seconds": seconds, "cpu": cpu, "result": result}), flush=True)


def start(src: Path, config: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.Popen([sys.executable, __file__, "--child", config], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)


def ask(proc: subprocess.Popen, line: str | None = None) -> dict:
    if line is not None:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
    out = proc.stdout.readline()
    if not out:
        raise RuntimeError("a benchmark process died (see its error above)")
    return json.loads(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", help="git revision to compare against")
    ap.add_argument("--config", default="experiments/transfer.toml")
    ap.add_argument("--programs", default="adamw,nadam,lion,momentum")
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child)
    if not args.before:
        ap.error("--before is required")
    with tempfile.TemporaryDirectory(prefix="bench_evaluation_") as tmp:
        compare(Path(tmp), args)


def compare(folder: Path, args: argparse.Namespace) -> None:
    """Both versions side by side: ``args.before`` unpacked into ``folder``, this checkout."""
    archive = folder / "before.tar"
    with archive.open("wb") as f:
        subprocess.run(["git", "archive", args.before, "src/optforge"], cwd=ROOT, stdout=f,
                       check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    procs = {"before": start(folder / "src", args.config), "this": start(ROOT / "src", args.config)}
    ready = {k: ask(p) for k, p in procs.items()}
    programs = args.programs.split(",")
    times = {m: {k: {p: [] for p in programs} for k in procs} for m in ("seconds", "cpu")}
    same = {p: True for p in programs}
    for b in range(args.blocks):
        order = ("before", "this") if b % 2 == 0 else ("this", "before")
        for p in programs:
            out = {k: ask(procs[k], p) for k in order}
            for m in times:
                for k in order:
                    times[m][k][p].append(out[k][m])
            same[p] &= len({json.dumps(o["result"], sort_keys=True) for o in out.values()}) == 1
        print(f"block {b + 1}/{args.blocks} done", file=sys.stderr, flush=True)
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    print(f"config {args.config}, stage tier0, before = {args.before}, {args.blocks} blocks, "
          f"1 thread; baselines identical: {ready['before'] == ready['this']}")
    print("| program | wall s before / this | this/before wall [q1, q3] | CPU s before / this | "
          "this/before CPU [q1, q3] | identical |")
    print("|---|---|---|---|---|---|")
    for p in [*programs, "all"]:
        cells = []
        for m in times:
            pick = programs if p == "all" else [p]
            before = [x for q in pick for x in times[m]["before"][q]]
            this = [x for q in pick for x in times[m]["this"][q]]
            cells += [f"{statistics.median(before):.2f} / {statistics.median(this):.2f}",
                      ratio([t / s for t, s in zip(this, before, strict=True)])]
        ok = all(same.values()) if p == "all" else same[p]
        print(f"| {p} | {' | '.join(cells)} | {ok} |")


def ratio(xs: list[float]) -> str:
    """Median [25th, 75th percentile]."""
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else xs * 3
    return f"{statistics.median(xs):.3f} [{q[0]:.3f}, {q[2]:.3f}]"


if __name__ == "__main__":
    main()
