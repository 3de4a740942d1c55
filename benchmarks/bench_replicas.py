"""Model-steps per second with K replicas batched, against one model at a time.

A model-step is one training step of one model. The digits MLP (tiny tier)
trains with zoo AdamW through :func:`optforge.train.train`, once with K=1
and once with ``--replicas`` (16) replicas stacked in one batched pass; the
time counted is the training loop alone (``TrainResult.extra["seconds"]["train"]``:
no setup, no evaluation). The machine is shared and noisy, so the two run in
alternating blocks (the order flips every block) and the report is the median
over blocks of each block's throughput ratio ``K * rate(K) / rate(1)``, with
the 25th-75th percentile range. Target: >= 6x at K=16 on the 2-core CPU.

Run::

    .venv/bin/python benchmarks/bench_replicas.py                  # 1 thread, 7 blocks
    .venv/bin/python benchmarks/bench_replicas.py --threads 2 --replicas 8 16 32
"""

from __future__ import annotations

import argparse
import statistics

import torch

from optforge.train import train


def steps_per_second(task: str, tier: str, k: int, steps: int) -> float:
    res = train(task, "adamw", tier, seeds=list(range(k)), hparams={"lr": 1e-3}, steps=steps,
                schedule="constant", warmup=0, eval_every=steps)
    assert res.error is None, res.error
    return steps / res.extra["seconds"]["train"]


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return q[0], statistics.median(xs), q[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="digits_mlp")
    ap.add_argument("--tier", default="tiny")
    ap.add_argument("--replicas", type=int, nargs="+", default=[16])
    ap.add_argument("--steps", type=int, default=300, help="steps per block")
    ap.add_argument("--blocks", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [1, *args.replicas]
    for k in sizes:  # warm up: data sets, allocator, kernels
        steps_per_second(args.task, args.tier, k, 20)
    rates: dict[int, list[float]] = {k: [] for k in sizes}
    for block in range(args.blocks):
        order = sizes if block % 2 == 0 else sizes[::-1]
        for k in order:
            rates[k].append(steps_per_second(args.task, args.tier, k, args.steps))
    print(f"{args.task}/{args.tier}, zoo adamw, {args.threads} thread(s), "
          f"{args.blocks} blocks of {args.steps} steps (median [IQR] over blocks)\n")
    print("| K | steps/s | model-steps/s | throughput vs K=1 |")
    print("|---:|---:|---:|---:|")
    for k in sizes:
        _, rate, _ = quartiles(rates[k])
        ratios = [k * r / r1 for r, r1 in zip(rates[k], rates[1], strict=True)]
        lo, mid, hi = quartiles(ratios)
        print(f"| {k} | {rate:.0f} | {k * rate:.0f} | {mid:.1f}x [{lo:.1f}, {hi:.1f}] |")


if __name__ == "__main__":
    main()
