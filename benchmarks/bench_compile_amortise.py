"""The two numbers behind ``compile = "auto"`` (optforge/train/amortise.py).

1. Per task, what the compiled step saves in one search evaluation: a program trained
   as a search evaluation trains it (the learning-rate grid x task seeds as replicas,
   ``--steps`` steps), eager and compiled in alternating runs, timing the whole run and
   the time inside ``optimizer.step()``; medians over ``--blocks``.
2. The build: gcc for each zoo program into an empty kernel cache (and the load from
   the cache that every later evaluation of the program pays).

Run (the short transfer configuration's evolution tier)::

    nice -n 5 .venv/bin/python benchmarks/bench_compile_amortise.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from optforge import zoo
from optforge.lang.runtime import Plan
from optforge.optim import ProgramOptimizer, compiled
from optforge.train import train

GRID = [0.0001, 0.000316, 0.001, 0.00316, 0.01, 0.0316, 0.1]  # experiments/transfer.toml
TASKS = ["digits_mlp", "digits_ae", "digits_logreg", "mnist1d_cnn", "adding_rnn"]
BUILD = ["adamw", "lion", "nadam", "momentum", "lamb"]


def timed_step(acc: list[float]):
    original = ProgramOptimizer.step

    def step(self, *args, **kwargs):
        t = time.perf_counter()
        out = original(self, *args, **kwargs)
        acc[0] += time.perf_counter() - t
        return out

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=TASKS)
    ap.add_argument("--tier", default="tiny")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--program", default="adamw")
    ap.add_argument("--blocks", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ["OPTFORGE_KERNEL_CACHE"] = tempfile.mkdtemp(prefix="kernels-")
    acc = [0.0]
    ProgramOptimizer.step = timed_step(acc)
    seeds = [s for _ in GRID for s in range(args.seeds)]
    lrs = [lr for lr in GRID for _ in range(args.seeds)]
    prog = zoo.load(args.program)
    print(f"{args.program}, {len(seeds)} replicas, {args.tier} @ {args.steps} steps, "
          f"{args.blocks} alternating blocks (medians)")
    print("| task | run s eager / compiled | step s eager / compiled | step share (eager) "
          "| saved per evaluation s | saved per step ms |")
    print("|---|---|---|---:|---:|---:|")
    total = 0.0
    for task in args.tasks:
        runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(args.blocks):
            for comp in (False, True):
                acc[0] = 0.0
                t = time.perf_counter()
                train(task, prog, args.tier, seeds=seeds, hparams={"lr": lrs},
                      steps=args.steps, eval_every=max(1, args.steps // 20), compile=comp)
                runs[comp].append((time.perf_counter() - t, acc[0]))
        run = {c: statistics.median(r for r, _ in v) for c, v in runs.items()}
        step = {c: statistics.median(s for _, s in v) for c, v in runs.items()}
        saved = step[False] - step[True]
        total += saved
        print(f"| {task} | {run[False]:.2f} / {run[True]:.2f} | {step[False]:.3f} / "
              f"{step[True]:.3f} | {step[False] / run[False]:.1%} | {saved:.3f} | "
              f"{1000 * saved / args.steps:.2f} |")
    print(f"saved per complete evaluation (all tasks): {total:.2f} s")
    os.environ["OPTFORGE_KERNEL_CACHE"] = tempfile.mkdtemp(prefix="kernels-")  # empty again
    compiled._LOADED.clear()
    print("| program | gcc build s | load from the cache ms |")
    print("|---|---:|---:|")
    for name in BUILD:
        step = compiled.CompiledStep(Plan(zoo.load(name)), len(seeds))
        t = time.perf_counter()
        step.kernel(torch.float32)
        built = time.perf_counter() - t
        compiled._LOADED.clear()  # a new process: the library is on disk, not loaded
        step = compiled.CompiledStep(Plan(zoo.load(name)), len(seeds))
        t = time.perf_counter()
        step.kernel(torch.float32)
        print(f"| {name} | {built:.3f} | {1000 * (time.perf_counter() - t):.1f} |")


if __name__ == "__main__":
    main()
