"""What ``compile=True`` buys a search or bench evaluation: the optimizer step's share
of training time per task and tier, and the training loop with and without it.

For each (task, tier), with zoo AdamW and ``--replicas`` (8) replicas, the way a
search evaluation trains:

* ``step ms``: one optimizer step alone on the task's parameters (fixed random
  gradients), eager and compiled, median of alternating blocks;
* ``train ms/step``: :func:`optforge.train.train`'s training loop per step
  (forward, backward, clipping, step), eager and compiled, alternating runs, median;
* ``share``: eager step / eager training step, the most compiling can save;
* ``speed-up``: eager / compiled training time per step, i.e. evaluations per hour
  after / before.

Run::

    nice -n 5 .venv/bin/python benchmarks/bench_train_compiled.py            # tiny and small
    nice -n 5 .venv/bin/python benchmarks/bench_train_compiled.py --tasks digits_mlp --tiers tiny
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from optforge import tasks, zoo
from optforge.optim import ProgramOptimizer
from optforge.train import train

STEPS = {"tiny": 100, "small": 40, "medium": 10}


def step_ms(params, compile: bool, steps: int) -> float:
    opt = ProgramOptimizer(params, zoo.load("adamw"), lr=1e-3, replicas=params[0].shape[0],
                           compile=compile)
    opt.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - t0) / steps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=tasks.names())
    ap.add_argument("--tiers", nargs="+", default=["tiny", "small"])
    ap.add_argument("--replicas", type=int, default=8)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"zoo adamw, K={args.replicas}, {args.threads} thread(s), {args.blocks} blocks\n")
    print("| task | tier | params/replica | step ms eager / compiled | train ms/step eager "
          "/ compiled | step share (eager) | speed-up (evals/h after/before) |")
    print("|---|---|---:|---|---|---:|---:|")
    for name in args.tasks:
        task = tasks.get(name)
        for tier in args.tiers:
            seeds = list(range(args.replicas))
            inst = task.instantiate(tier, seeds)
            params = [p.detach().clone().requires_grad_() for p in inst.params]
            for p in params:
                p.grad = torch.randn_like(p)
            hp = task.spec(tier).adamw
            steps = STEPS[tier]
            for compile in (False, True):  # warm up (and build the kernel)
                train(task, "adamw", tier, seeds, hp, steps=2, compile=compile)
            s = {False: [], True: []}
            t = {False: [], True: []}
            for b in range(args.blocks):
                for compile in ((False, True) if b % 2 == 0 else (True, False)):
                    s[compile].append(step_ms(params, compile, 20))
                    res = train(task, "adamw", tier, seeds, hp, steps=steps,
                                eval_every=steps, compile=compile)
                    assert res.error is None, res.error
                    t[compile].append(res.extra["seconds"]["train"] / steps * 1e3)
            se, sc = statistics.median(s[False]), statistics.median(s[True])
            te, tc = statistics.median(t[False]), statistics.median(t[True])
            print(f"| {name} | {tier} | {inst.num_params():,} | {se:.2f} / {sc:.2f} "
                  f"| {te:.2f} / {tc:.2f} | {se / te:.0%} | {te / tc:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
