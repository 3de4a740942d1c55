"""Step time of an exported optimizer against the reference, side by side.

The zoo's ``adamw`` is exported with ``optforge export`` into a temporary file,
imported, and timed against ``torch.optim.AdamW(foreach=True)`` on the same
parameters and gradients (same hyperparameters: lr 1e-3, betas 0.9/0.999,
eps 1e-8, weight decay 0.01). On a GPU (``--device cuda``) the exported optimizer
runs with ``compile=True`` against ``torch.optim.AdamW(fused=True)``.

Cases:

* ``small``: 200 small tensors (64 x 64, 64 x 16 matrices and 64-, 16-vectors; 0.26M values)
* ``large``: 4 tensors totalling about 10M parameters

The two optimizers run in alternating blocks of ``--steps`` steps (the order
flips every block), after warm-up steps; the report is the median over blocks
of the per-block time ratio ``exported / reference`` with its 25th-75th
percentile range, and the median step times. Gradients are fixed random tensors
set once, so a step times the optimizer alone. Also checked: both optimizers
reach the same parameters (largest absolute difference after the run).

Run::

    .venv/bin/python benchmarks/bench_export.py                  # CPU, 1 thread
    .venv/bin/python benchmarks/bench_export.py --cases small --blocks 31
    .venv/bin/python benchmarks/bench_export.py --device cuda    # compiled vs fused
"""

from __future__ import annotations

import argparse
import importlib.util
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
    gpu = device != "cpu"
    ours = cls(clone_params(base), lr=HYPER["lr"], beta1=HYPER["beta1"], beta2=HYPER["beta2"],
               eps=HYPER["eps"], wd=HYPER["wd"], compile=gpu)
    kind = {"fused": True} if gpu else {"foreach": True}
    ref = torch.optim.AdamW(clone_params(base), lr=HYPER["lr"],
                            betas=(HYPER["beta1"], HYPER["beta2"]), eps=HYPER["eps"],
                            weight_decay=HYPER["wd"], **kind)
    if steps is None:
        steps = 20 if case == "small" else 3
    for opt in (ours, ref):
        time_block(opt, 3, device)  # warm-up: state, first-call overheads, compilation
    t_ours, t_ref, ratios = [], [], []
    for b in range(blocks):
        if b % 2 == 0:
            to = time_block(ours, steps, device)
            tr = time_block(ref, steps, device)
        else:
            tr = time_block(ref, steps, device)
            to = time_block(ours, steps, device)
        t_ours.append(to)
        t_ref.append(tr)
        ratios.append(to / tr)
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    pa = [p for g in ours.param_groups for p in g["params"]]
    pb = [p for g in ref.param_groups for p in g["params"]]
    diff = max((a - b).abs().max().item() for a, b in zip(pa, pb, strict=True))
    return {
        "case": case, "tensors": len(base), "params": sum(p.numel() for p in base),
        "ours_ms": 1e3 * statistics.median(t_ours), "ref_ms": 1e3 * statistics.median(t_ref),
        "ratio": statistics.median(ratios), "q1": q[0], "q3": q[2], "diff": diff,
        "steps": steps * blocks + 3,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="small,large")
    ap.add_argument("--blocks", type=int, default=21, help="alternating timing blocks")
    ap.add_argument("--steps", type=int, default=None, help="steps per block")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda: compiled vs fused AdamW")
    args = ap.parse_args(argv)
    if args.device != "cpu" and not torch.cuda.is_available():
        sys.exit("no CUDA device available")
    torch.set_num_threads(args.threads)
    ref = "AdamW(fused=True)" if args.device != "cpu" else "AdamW(foreach=True)"
    ours = "exported AdamW" + (" (compile=True)" if args.device != "cpu" else "")
    print(f"torch {torch.__version__}, device {args.device}, {args.threads} thread(s), "
          f"{args.blocks} blocks: {ours} vs torch.optim.{ref}")
    print(f"{'case':6} {'tensors':>7} {'params':>9} {'exported ms':>11} {'ref ms':>8} "
          f"{'ratio':>6} {'[q1, q3]':>14} {'max |diff|':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        cls = exported_adamw(Path(tmp))
        for case in args.cases.split(","):
            r = bench(cls, case, args.blocks, args.steps, args.device)
            print(f"{r['case']:6} {r['tensors']:7d} {r['params']:9d} {r['ours_ms']:11.3f} "
                  f"{r['ref_ms']:8.3f} {r['ratio']:6.3f} [{r['q1']:.3f}, {r['q3']:.3f}] "
                  f"{r['diff']:10.1e}", flush=True)


if __name__ == "__main__":
    main()
