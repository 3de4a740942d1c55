"""Wall time per 1000 training steps of every task at every tier, for planning search budgets.

Each (task, tier) trains ``--replicas`` (8) replicas with zoo AdamW through
:func:`optforge.train.train` for a few steps (``--steps``: tiny 200, small
100, medium 30 by default; medium figures are therefore estimates from fewer
steps) and reports the training loop's time alone, scaled to 1000 steps, plus
the time of one evaluation and of building the task (data sets are built once
per process, so the first build of a data set is reported separately).

Run::

    .venv/bin/python benchmarks/bench_tasks.py                       # all, 1 thread, K=8
    .venv/bin/python benchmarks/bench_tasks.py --tasks digits_mlp charlm --tiers tiny
"""

from __future__ import annotations

import argparse
import time

import torch

from optforge import tasks
from optforge.tasks import data
from optforge.train import train

STEPS = {"tiny": 200, "small": 100, "medium": 30}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=tasks.names())
    ap.add_argument("--tiers", nargs="+", default=list(tasks.TIERS))
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=None, help="steps per run (default by tier)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"zoo adamw, K={args.replicas} replicas, {args.threads} thread(s)\n")
    for name, build in (("digits", data.digits), ("mnist1d", data.mnist1d), ("text", data.text)):
        start = time.perf_counter()
        build()
        print(f"data set {name}: built in {time.perf_counter() - start:.1f} s (once per process)")
    print("\n| task | tier | params/replica | steps timed | s / 1000 steps | ms / eval |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.tasks:
        task = tasks.get(name)
        for tier in args.tiers:
            steps = args.steps or STEPS[tier]
            seeds = list(range(args.replicas))
            n_params = task.instantiate(tier, seeds[:1]).num_params()
            train(task, "adamw", tier, seeds, task.spec(tier).adamw, steps=3)  # warm up
            res = train(task, "adamw", tier, seeds, task.spec(tier).adamw, steps=steps,
                        eval_every=steps)
            assert res.error is None, res.error
            sec = res.extra["seconds"]
            per_1000 = sec["train"] / steps * 1000
            per_eval = sec["eval"] / len(res.eval_steps) * 1000
            print(f"| {name} | {tier} | {n_params:,} | {steps} | {per_1000:.1f} | "
                  f"{per_eval:.1f} |", flush=True)


if __name__ == "__main__":
    main()
