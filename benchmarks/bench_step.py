"""Step time of ``ProgramOptimizer`` against the reference optimizers, side by side.

Pairs (program optimizer vs reference, same parameters, same gradients):

* zoo ``adamw``  vs ``torch.optim.AdamW(foreach=True)``
* zoo ``lion``   vs ``pytorch_optimizer.Lion(foreach=True)``

Cases (CPU):

* ``small``: 200 small tensors (a mix of 64 x 64, 64 x 16 matrices and 64-vectors, ~0.4M values)
* ``large``: 4 tensors totalling about 10M parameters

The machine is shared and noisy, so the two optimizers run in alternating
blocks of ``--steps`` steps (the order flips every block) and the report is
the median over blocks of the per-block time ratio ``program / reference``,
with the 25th-75th percentile range. Gradients are fixed random tensors set
once, so a step times the optimizer alone.

Memory, for each optimizer: the bytes of its state tensors (against
``slots x parameter bytes``), whether the state tensors after all timed steps
are the very tensors (same storage) there were after warm-up, and the
temporary bytes one step allocates (summed over ops by ``torch.profiler``'s
memory profiling; they are freed by the end of the step).

Run::

    .venv/bin/python benchmarks/bench_step.py                 # everything, 1 thread
    .venv/bin/python benchmarks/bench_step.py --pairs adamw --cases small --blocks 9
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator

import torch
from _params import clone_params, make_params

from optforge import zoo
from optforge.optim import ProgramOptimizer

LION = """\
def lion(w, g, m, lr, beta1=0.9, beta2=0.99, wd=0.0):
    update = lr * (sign(interp(m, g, 1 - beta1)) + wd * w)
    m = interp(m, g, 1 - beta2)
    return update, m
"""


def lion_program():
    """The zoo's Lion, or the design sketch's text while the zoo lacks it."""
    return zoo.load("lion") if "lion" in zoo.names() else LION


PAIRS: dict[str, tuple[Callable, Callable]] = {
    "adamw": (
        lambda ps: ProgramOptimizer(ps, zoo.load("adamw"), lr=1e-3, wd=0.01),
        lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01, foreach=True),
    ),
    "lion": (
        lambda ps: ProgramOptimizer(ps, lion_program(), lr=1e-4, wd=0.1),
        lambda ps: __import__("pytorch_optimizer").Lion(ps, lr=1e-4, weight_decay=0.1,
                                                        foreach=True),
    ),
}


def state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(v.nbytes for s in opt.state.values() for v in s.values()
               if isinstance(v, torch.Tensor) and v.dim() > 0)


def state_storage(opt: torch.optim.Optimizer) -> list[tuple[int, int]]:
    return [(id(v), v.data_ptr()) for s in opt.state.values() for v in s.values()
            if isinstance(v, torch.Tensor)]


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The profiler's C++ side prints start/stop lines on fd 2."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def temporary_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes allocated by the ops of one step (what each op's outputs keep)."""
    with _quiet_stderr(), torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        opt.step()
    return sum(k.self_cpu_memory_usage for k in prof.key_averages()
               if k.self_cpu_memory_usage > 0)


def time_block(opt: torch.optim.Optimizer, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - t0) / steps


def bench(pair: str, case: str, blocks: int, steps: int | None) -> dict:
    make_prog, make_ref = PAIRS[pair]
    base = make_params(case)
    prog = make_prog(clone_params(base))
    ref = make_ref(clone_params(base))
    if steps is None:
        steps = 20 if case == "small" else 3
    for opt in (prog, ref):
        time_block(opt, 2)  # warm-up: state allocation, first-call overheads
    storage = [state_storage(opt) for opt in (prog, ref)]
    t_prog, t_ref, ratios = [], [], []
    for b in range(blocks):
        if b % 2 == 0:
            tp = time_block(prog, steps)
            tr = time_block(ref, steps)
        else:
            tr = time_block(ref, steps)
            tp = time_block(prog, steps)
        t_prog.append(tp)
        t_ref.append(tr)
        ratios.append(tp / tr)
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    n_param_bytes = sum(p.nbytes for p in base)
    stable = [state_storage(opt) == before
              for opt, before in zip((prog, ref), storage, strict=True)]
    return {
        "pair": pair, "case": case, "tensors": len(base),
        "params": sum(p.numel() for p in base),
        "prog_ms": 1e3 * statistics.median(t_prog), "ref_ms": 1e3 * statistics.median(t_ref),
        "ratio": statistics.median(ratios), "q1": q[0], "q3": q[2],
        "state_bytes": state_bytes(prog), "ref_state_bytes": state_bytes(ref),
        "slots_x_param_bytes": len(prog._plan.slots) * n_param_bytes,
        "stable": stable, "temp_bytes": [temporary_bytes(opt) for opt in (prog, ref)],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", default="adamw,lion")
    ap.add_argument("--cases", default="small,large")
    ap.add_argument("--blocks", type=int, default=15, help="alternating timing blocks")
    ap.add_argument("--steps", type=int, default=None, help="steps per block")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.blocks} blocks")
    print("| pair | case | tensors | params | program ms | reference ms | ratio [q1, q3] "
          "| state MB (= slots x params?) | same state tensors | temporary MB / step |")
    print("|---|---|---:|---:|---:|---:|---|---|---|---|")
    mb = 2.0**-20
    for pair in args.pairs.split(","):
        for case in args.cases.split(","):
            r = bench(pair, case, args.blocks, args.steps)
            same = "yes" if r["state_bytes"] == r["slots_x_param_bytes"] else "NO"
            tp, tr = r["temp_bytes"]
            print(f"| {r['pair']} | {r['case']} | {r['tensors']} | {r['params']} "
                  f"| {r['prog_ms']:.3f} | {r['ref_ms']:.3f} "
                  f"| {r['ratio']:.3f} [{r['q1']:.3f}, {r['q3']:.3f}] "
                  f"| {r['state_bytes'] * mb:.2f} ({same}; ref {r['ref_state_bytes'] * mb:.2f}) "
                  f"| {'yes' if r['stable'][0] else 'NO'} (ref "
                  f"{'yes' if r['stable'][1] else 'NO'}) "
                  f"| {tp * mb:.2f} (ref {tr * mb:.2f}) |", flush=True)


if __name__ == "__main__":
    main()
