"""Step time of an exported optimizer against torch's AdamW, side by side.

The zoo's ``adamw`` is exported with ``optforge export`` into a temporary file,
imported, and timed on the same parameters and gradients (lr 1e-3, betas
0.9/0.999, eps 1e-8, weight decay 0.01), four optimizers in all:

* the exported class (eager) against ``torch.optim.AdamW(foreach=True)``;
* the exported class with ``compile=True`` (optforge's C step, embedded in the
  file) against ``torch.optim.AdamW(fused=True)``.

Cases:

* ``small``: 200 small tensors (64 x 64, 64 x 16 matrices and 64-, 16-vectors; 0.26M values)
* ``large``: 4 tensors totalling about 10M parameters

The four run in alternating blocks of ``--steps`` steps (the order rotates every
block), after warm-up steps; the report is the median over blocks of the per-block
time ratio to the reference with its 25th-75th percentile range, and the median
step times. ``first s``: the compiled class's construction plus first step with an
empty kernel cache (gcc's build included). Gradients are fixed random tensors set
once, so a step times the optimizer alone. Also checked: the exported optimizers
reach torch's parameters (``max diff``: the largest absolute difference after the
run, exported vs foreach and compiled vs fused). On a GPU
(``--device cuda``) the compiled class runs its eager step (the C step is CPU only).

Run::

    nice -n 5 .venv/bin/python benchmarks/bench_export.py                  # CPU, 1 thread
    nice -n 5 .venv/bin/python benchmarks/bench_export.py --cases small --blocks 31
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _params import clone_params, make_params

from optforge.export import export_source, resolve

HYPER = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "wd": 0.01}


def exported_adamw(folder: Path):
    """Export the zoo's AdamW into ``folder`` and import the generated module."""
    program, origin = resolve("adamw")
    path = folder / "exported_adamw.py"
    path.write_text(export_source(program, "ExportedAdamW", origin=origin,
                                  module="exported_adamw"))
    spec = importlib.util.spec_from_file_location("exported_adamw", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["exported_adamw"] = module  # (its kernel cache is cleared by bench)
    spec.loader.exec_module(module)
    return module.ExportedAdamW


def time_block(opt: torch.optim.Optimizer, steps: int, device: str) -> float:
    if device != "cpu":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    if device != "cpu":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def bench(cls, case: str, blocks: int, steps: int | None, device: str) -> dict:
    base = make_params(case, device)
    hyper = {"lr": HYPER["lr"], "beta1": HYPER["beta1"], "beta2": HYPER["beta2"],
             "eps": HYPER["eps"], "wd": HYPER["wd"]}
    with tempfile.TemporaryDirectory() as tmp:  # an empty kernel cache: gcc runs
        os.environ["OPTFORGE_KERNEL_CACHE"] = tmp
        sys.modules[cls.__module__]._KERNELS.clear()
        t0 = time.perf_counter()
        compiled = cls(clone_params(base), compile=True, **hyper)
        time_block(compiled, 1, device)
        first = time.perf_counter() - t0
        del os.environ["OPTFORGE_KERNEL_CACHE"]
    assert device != "cpu" or compiled._c_step is not None, "the C step was not built"
    eager = cls(clone_params(base), **hyper)
    torch_kw = {"lr": HYPER["lr"], "betas": (HYPER["beta1"], HYPER["beta2"]),
                "eps": HYPER["eps"], "weight_decay": HYPER["wd"]}
    foreach = torch.optim.AdamW(clone_params(base), foreach=True, **torch_kw)
    fused = torch.optim.AdamW(clone_params(base), fused=True, **torch_kw)
    opts = [eager, compiled, foreach, fused]
    if steps is None:
        steps = 20 if case == "small" else 3
    time_block(compiled, 2, device)
    for opt in (eager, foreach, fused):
        time_block(opt, 3, device)  # warm-up: state, first-call overheads
    times: list[list[float]] = [[] for _ in opts]
    for b in range(blocks):
        for j in [(b + k) % len(opts) for k in range(len(opts))]:
            times[j].append(time_block(opts[j], steps, device))
    out = {"case": case, "tensors": len(base), "params": sum(p.numel() for p in base),
           "first": first}
    for key, j, r in (("eager", 0, 2), ("compiled", 1, 3)):
        ratios = [a / b for a, b in zip(times[j], times[r], strict=True)]
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        theirs = [p for g in opts[r].param_groups for p in g["params"]]
        ours = [p for g in opts[j].param_groups for p in g["params"]]
        diff = max((a - b).abs().max().item() for a, b in zip(ours, theirs, strict=True))
        out[key] = {"ms": 1e3 * statistics.median(times[j]),
                    "ref_ms": 1e3 * statistics.median(times[r]),
                    "ratio": statistics.median(ratios), "q1": q[0], "q3": q[2], "diff": diff}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="small,large")
    ap.add_argument("--blocks", type=int, default=21, help="alternating timing blocks")
    ap.add_argument("--steps", type=int, default=None, help="steps per block")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args(argv)
    if args.device != "cpu" and not torch.cuda.is_available():
        sys.exit("no CUDA device available")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {args.device}, {args.threads} thread(s), "
          f"{args.blocks} blocks")
    print("| case | exported / foreach [q1, q3] | exported ms | foreach ms "
          "| compiled / fused [q1, q3] | compiled ms | fused ms | first s | max diff |")
    print("|---|---|---:|---:|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        cls = exported_adamw(Path(tmp))
        for case in args.cases.split(","):
            r = bench(cls, case, args.blocks, args.steps, args.device)
            e, c = r["eager"], r["compiled"]
            print(f"| {case} | {e['ratio']:.2f} [{e['q1']:.2f}, {e['q3']:.2f}] "
                  f"| {e['ms']:.3f} | {e['ref_ms']:.3f} "
                  f"| {c['ratio']:.2f} [{c['q1']:.2f}, {c['q3']:.2f}] "
                  f"| {c['ms']:.3f} | {c['ref_ms']:.3f} | {r['first']:.2f} "
                  f"| {e['diff']:.0e}, {c['diff']:.0e} |", flush=True)


if __name__ == "__main__":
    main()
