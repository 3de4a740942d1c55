"""Evaluations per hour with 1 and 2 process workers, and the run store's overhead.

The same small real search (regularized evolution from AdamW on
``tiny:quadratic,digits_mlp@STEPS``, hurdles off, no funnel) runs with the
process-pool backend at 1 worker and at N workers (``--workers``, default 2),
alternating, ``--repeats`` times each, every run recorded in a fresh run store.
The baselines are tuned once beforehand and shared, so only evolution is timed.

Reported: evaluations per hour for each worker count (median over repeats), the
scaling ratio ``rate(N) / rate(1)`` (target >= 1.7 at N = 2: needs N idle
cores), with ``--ray`` Ray's overhead against the process pool at N workers
(target <= 15%), and the store overhead ``time in store writes / time evaluating`` summed
over all runs (target < 1%). Per run it also prints the mean evaluation time
(inside the worker) and how busy the workers were: a longer mean evaluation at N
workers than at 1 means the cores were contended (the driver and other load
share them), a low busy share means the workers waited on the driver.

Run::

    .venv/bin/python benchmarks/bench_parallel.py                   # 24 evaluations, 2 repeats
    .venv/bin/python benchmarks/bench_parallel.py --evaluations 48 --repeats 3 --workers 4
    .venv/bin/python benchmarks/bench_parallel.py --ray          # Ray against the process pool
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--evaluations", type=int, default=24)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ray", action="store_true",
                    help="also Ray at N workers (a local cluster on 127.0.0.1)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from optforge.runtime import make_backend
    from optforge.search import Search, SearchConfig
    from optforge.store import RunStore

    cfg = SearchConfig(seed=0, evaluations=args.evaluations, population=8, tournament=3,
                       tiers=[f"tiny:quadratic,digits_mlp@{args.steps}"], heldout="",
                       hurdle_percentile=0, simplify_top=0, promote_threshold=1e9)
    fitness = Search(cfg).build_fitness()
    t = time.perf_counter()
    for task in fitness.stages["tier0"].tasks:
        fitness.baseline("tier0", task)
    print(f"baselines tuned in {time.perf_counter() - t:.1f} s; cores: {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}")

    from optforge import zoo
    from optforge.search.evaluator import Job

    warm = make_backend("process", fitness, 1)  # starts the fork server (once per process)
    warm.submit(Job(0, zoo.load("adamw"), "tier0"))
    warm.take()
    warm.close()

    kinds = [("process", 1), ("process", args.workers)]
    if args.ray:
        import ray

        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
                 _node_ip_address="127.0.0.1", object_store_memory=80 * 2**20)
        kinds.append(("ray", args.workers))
    rates: dict[tuple[str, int], list[float]] = {k: [] for k in kinds}
    store_s = eval_s = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for i, (backend, workers) in enumerate(kinds if r % 2 == 0 else kinds[::-1]):
                if backend == "ray":
                    ray_warm = make_backend("ray", fitness, workers)  # workers started, warm
                    ray_warm.close()
                path = Path(tmp) / f"run-{r}-{i}"
                with RunStore.create(path, "search", cfg.as_dict()) as store:
                    backend_obj = make_backend(backend, fitness, workers)
                    t = time.perf_counter()
                    result = Search(cfg, fitness=fitness, store=store,
                                    evaluator=backend_obj).run()
                    wall = time.perf_counter() - t
                    backend_obj.close()
                    n = result.counters["evaluated"]
                    rates[(backend, workers)].append(n / wall * 3600)
                    store_s += store.seconds
                    secs = [x for (x,) in store.rows("SELECT seconds FROM evaluations")]
                    eval_s += sum(secs)
                    busy = sum(secs) / (wall * workers)
                    print(f"{backend} x{workers}: {n} evaluations in {wall:.1f} s "
                          f"({n / wall * 3600:.0f}/h), mean evaluation {sum(secs) / len(secs):.3f}"
                          f" s, workers busy {busy:.0%}, store {store.seconds * 1e3:.1f} ms")
    base = statistics.median(rates[kinds[0]])
    for k in kinds:
        print(f"{k[0]} x{k[1]}: median {statistics.median(rates[k]):.0f} evaluations/hour")
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"scaling process x{args.workers} / process x1: {med[kinds[1]] / base:.2f}x")
    if args.ray:
        print(f"Ray overhead at {args.workers} workers: "
              f"{med[kinds[1]] / med[kinds[2]] - 1:+.1%} (process rate / Ray rate - 1)")
    print(f"store overhead: {store_s:.3f} s in writes / {eval_s:.1f} s evaluating = "
          f"{store_s / eval_s:.3%}")


if __name__ == "__main__":
    main()
