"""A user's ModelTask: the vmap path against the one-replica-at-a-time fallback.

The worked example of docs/TASKS.md (``docs/examples/my_tasks.py:my_task``, a
2-32-2 MLP with LayerNorm on scikit-learn's moons) trains K replicas with zoo
AdamW through :func:`optforge.train.train`, once with ``replicas="loop"`` and
once with ``replicas="vmap"``; the time counted is the training loop alone
(``TrainResult.extra["seconds"]["train"]``). The two alternate in blocks (the
order flips every block) and the report is the median over blocks of the
per-block ratio loop time / vmap time, with the 25th-75th percentile range.

Run::

    .venv/bin/python benchmarks/bench_user_task.py                  # K = 4 16, 5 blocks
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from optforge import tasks
from optforge.train import train

REF = f"{Path(__file__).resolve().parents[1] / 'docs' / 'examples' / 'my_tasks.py'}:my_task"


def seconds(mode: str, k: int, steps: int) -> float:
    task = tasks.get(REF)
    task.inner.replicas = mode
    res = train(task, "adamw", seeds=list(range(k)), hparams={"lr": 1e-2}, steps=steps,
                schedule="constant", warmup=0, eval_every=steps)
    assert res.error is None, res.error
    return res.extra["seconds"]["train"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seconds("vmap", 2, 5)  # warm-up: data, imports
    print("| K | loop s / 1000 steps | vmap s / 1000 steps | loop / vmap [IQR] |")
    print("|---:|---:|---:|---:|")
    for k in args.replicas:
        ratios, loop, vmap = [], [], []
        for b in range(args.blocks):
            order = ("loop", "vmap") if b % 2 == 0 else ("vmap", "loop")
            t = {m: seconds(m, k, args.steps) for m in order}
            loop.append(t["loop"])
            vmap.append(t["vmap"])
            ratios.append(t["loop"] / t["vmap"])
        q = statistics.quantiles(ratios, n=4, method="inclusive")
        scale = 1000 / args.steps
        print(f"| {k} | {statistics.median(loop) * scale:.2f} | "
              f"{statistics.median(vmap) * scale:.2f} | "
              f"{statistics.median(ratios):.2f}x [{q[0]:.2f}, {q[2]:.2f}] |")


if __name__ == "__main__":
    main()
