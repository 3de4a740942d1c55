"""Step time of this checkout against an earlier revision, side by side in one process.

Two measurements, each as alternating blocks of steps (the order flips every block),
reported as the median over blocks of ``this / before`` with the 25th-75th percentile
range (below 1: this checkout is faster):

* the eager step of ``ProgramOptimizer`` (zoo AdamW and Lion), this checkout's against
  the revision's (its ``src/optforge`` extracted with ``git archive`` and imported as
  ``optforge_before``);
* the exported AdamW file, as this checkout's ``optforge export`` writes it against the
  file the revision writes.

Cases as in ``bench_step.py``: ``small`` (200 tensors, 0.26M values), ``large`` (4
tensors, 9.97M values); CPU, float32, fixed gradients.

Run::

    .venv/bin/python benchmarks/bench_versions.py --before de6b6a9 --blocks 21
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from _params import clone_params, make_params

from optforge import zoo
from optforge.optim import ProgramOptimizer

ROOT = Path(__file__).resolve().parents[1]
HYPER = {"adamw": {"lr": 1e-3, "wd": 0.01}, "lion": {"lr": 1e-4, "wd": 0.1}}
STEPS = {"small": 20, "large": 3}


def extract(rev: str, folder: Path) -> None:
    """``src/optforge`` of ``rev`` as the package ``optforge_before`` in ``folder``."""
    archive = folder / "before.tar"
    with archive.open("wb") as f:
        subprocess.run(["git", "archive", rev, "src/optforge"], cwd=ROOT, stdout=f, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    (folder / "src" / "optforge").rename(folder / "optforge_before")
    sys.path.insert(0, str(folder))


def exported(folder: Path, tag: str, env: dict) -> type:
    """The AdamW class exported by this checkout (``env`` empty) or the revision."""
    code = ("from optforge.export import export_source, resolve; p, o = resolve('adamw'); "
            "print(export_source(p, 'A', origin=o), end='')")
    text = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, check=True).stdout
    path = folder / f"exported_{tag}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.A


def block(opt: torch.optim.Optimizer, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - t0) / steps


def side_by_side(opts: dict, blocks: int, steps: int) -> str:
    for opt in opts.values():
        block(opt, 3)  # warm-up: state, traces, first-call overheads
    ratios, times = [], {k: [] for k in opts}
    for b in range(blocks):
        order = ("before", "this") if b % 2 == 0 else ("this", "before")
        t = {k: block(opts[k], steps) for k in order}
        ratios.append(t["this"] / t["before"])
        for k in opts:
            times[k].append(t[k])
    q = statistics.quantiles(ratios, n=4)
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    return (f"{ms['before']:9.3f} {ms['this']:9.3f}  {statistics.median(ratios):.3f} "
            f"[{q[0]:.3f}, {q[2]:.3f}]")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True, help="git revision to compare against")
    ap.add_argument("--blocks", type=int, default=21)
    ap.add_argument("--cases", default="small,large")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="bench_versions_"))
    extract(args.before, folder)
    import optforge_before.optim as before

    cases = args.cases.split(",")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.blocks} blocks, "
          f"before = {args.before}")
    print("what                    case   before ms   this ms  this/before [q1, q3]")
    for name, hyper in HYPER.items():
        program = str(zoo.load(name))
        for case in cases:
            base = make_params(case, "cpu")
            opts = {"before": before.ProgramOptimizer(clone_params(base), program, **hyper),
                    "this": ProgramOptimizer(clone_params(base), program, **hyper)}
            for opt in opts.values():
                gen = torch.Generator().manual_seed(0)
                for p in opt.param_groups[0]["params"]:
                    p.grad = torch.randn(p.shape, generator=gen)
            line = side_by_side(opts, args.blocks, STEPS[case])
            print(f"eager step {name:<12} {case:<6} {line}", flush=True)
    src = str(folder / "src")
    (folder / "src").mkdir(exist_ok=True)
    (folder / "src" / "optforge").symlink_to(folder / "optforge_before")
    classes = {"before": exported(folder, "before", {"PYTHONPATH": src}),
               "this": exported(folder, "this", {})}
    for case in cases:
        base = make_params(case, "cpu")
        opts = {k: cls(clone_params(base), **HYPER["adamw"]) for k, cls in classes.items()}
        for opt in opts.values():
            gen = torch.Generator().manual_seed(0)
            for p in opt.param_groups[0]["params"]:
                p.grad = torch.randn(p.shape, generator=gen)
        print(f"exported adamw           {case:<6} {side_by_side(opts, args.blocks, STEPS[case])}",
              flush=True)


if __name__ == "__main__":
    main()
