"""The compiled step (``ProgramOptimizer(compile=True)``) against torch, side by side.

Three optimizers per pair, same parameters and same fixed gradients:
the compiled program, the eager program, and the reference

* ``adamw``: zoo ``adamw`` vs ``torch.optim.AdamW(fused=True)``
* ``lion``:  zoo ``lion``  vs ``pytorch_optimizer.Lion(foreach=True)`` (torch has no Lion)
* ``lamb``:  zoo ``lamb`` (two per-tensor norms) vs ``pytorch_optimizer.Lamb``

Cases: ``small`` (200 tensors, 0.26M values) and ``large`` (4 tensors, 9.97M), see
``_params.py``. The machine is shared and noisy, so the three run in alternating
blocks of ``--steps`` steps (the order rotates every block) and the report is the
median over blocks of the per-block ratios to the reference, with the 25th-75th
percentile range. ``first step s`` is the compiled optimizer's construction plus
first step with an empty kernel cache (a fresh ``OPTFORGE_KERNEL_CACHE``): gcc's
build included.

Run::

    nice -n 5 .venv/bin/python benchmarks/bench_compiled.py              # 1 thread
    nice -n 5 .venv/bin/python benchmarks/bench_compiled.py --pairs adamw --blocks 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from _params import clone_params, make_params

from optforge import zoo
from optforge.optim import ProgramOptimizer, ckernel


def _ref(pair: str, ps):
    import pytorch_optimizer as po

    if pair == "adamw":
        return torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01, fused=True)
    if pair == "lion":
        return po.Lion(ps, lr=1e-4, weight_decay=0.1, foreach=True)
    return po.Lamb(ps, lr=1e-3, weight_decay=0.0)


HYPER = {"adamw": {"lr": 1e-3, "wd": 0.01}, "lion": {"lr": 1e-4, "wd": 0.1},
         "lamb": {"lr": 1e-3}}


def time_block(opt, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - t0) / steps


def bench(pair: str, case: str, blocks: int, steps: int | None) -> dict:
    base = make_params(case)
    with tempfile.TemporaryDirectory() as tmp:  # an empty kernel cache: gcc runs
        os.environ["OPTFORGE_KERNEL_CACHE"] = tmp
        ckernel._KERNELS.clear()
        t0 = time.perf_counter()
        comp = ProgramOptimizer(clone_params(base), zoo.load(pair), compile=True, **HYPER[pair])
        comp.step()
        first = time.perf_counter() - t0
        del os.environ["OPTFORGE_KERNEL_CACHE"]
    assert comp._compiled is not None, "the program did not compile"
    eager = ProgramOptimizer(clone_params(base), zoo.load(pair), **HYPER[pair])
    ref = _ref(pair, clone_params(base))
    opts = [comp, eager, ref]
    steps = steps or (20 if case == "small" else 3)
    for opt in opts:
        time_block(opt, 2)
    times: list[list[float]] = [[], [], []]
    for b in range(blocks):
        order = [(b + j) % 3 for j in range(3)]
        for j in order:
            times[j].append(time_block(opts[j], steps))
    out = {"pair": pair, "case": case, "first": first}
    for j, key in ((0, "compiled"), (1, "eager")):
        r = [t / tr for t, tr in zip(times[j], times[2], strict=True)]
        q = statistics.quantiles(r, n=4)
        out[key] = (statistics.median(r), q[0], q[2], 1e3 * statistics.median(times[j]))
    out["ref_ms"] = 1e3 * statistics.median(times[2])
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", default="adamw,lion,lamb")
    ap.add_argument("--cases", default="small,large")
    ap.add_argument("--blocks", type=int, default=15, help="alternating timing blocks")
    ap.add_argument("--steps", type=int, default=None, help="steps per block")
    ap.add_argument("--threads", type=int, default=1, help="torch (and kernel) threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.blocks} blocks")
    print("| pair | case | compiled / ref [q1, q3] | eager / ref [q1, q3] | compiled ms "
          "| eager ms | reference ms | first step s |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    for pair in args.pairs.split(","):
        for case in args.cases.split(","):
            r = bench(pair, case, args.blocks, args.steps)
            c, e = r["compiled"], r["eager"]
            print(f"| {pair} | {case} | {c[0]:.2f} [{c[1]:.2f}, {c[2]:.2f}] "
                  f"| {e[0]:.2f} [{e[1]:.2f}, {e[2]:.2f}] | {c[3]:.3f} | {e[3]:.3f} "
                  f"| {r['ref_ms']:.3f} | {r['first']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
