"""Evaluations per hour with 1 and N process workers (and Ray), and the run store's overhead.

The same small real search (regularized evolution from AdamW on
``tiny:quadratic,digits_mlp@STEPS``, hurdles off, no funnel) runs with the
process-pool backend at 1 worker and at N workers (``--workers``, default 2),
alternating, ``--repeats`` times each, every run recorded in a fresh run store.
Every run keeps the same number of jobs in flight (``--in-flight``, default
``2 N``: the workers plus a queue), so every run evaluates exactly the same
programs in the same order (the search is a function of the in-flight count,
not of the worker count; checked) and the ratio of rates is the scaling alone,
not a difference in what was evaluated. The baselines are tuned once
beforehand and shared, so only the search is timed.

Reported per run: evaluations per hour, the mean evaluation time inside the
workers (longer at N workers than at 1: the cores were contended, by the
driver or other load), the workers' utilisation (time a worker held a job /
(wall * workers): below 100% the workers waited on the driver) and the
driver's busy share (wall time not spent waiting for a result). Summary: the
median rate per backend, the scaling ``rate(N) / rate(1)`` (target >= 1.7 at
N = 2: needs N idle cores, run it on a quiet machine), with ``--ray`` Ray's
overhead against the process pool at N workers (target <= 15%), and the store
overhead ``time in store writes / time evaluating`` over all runs (target < 1%).

``--sleep`` replaces the training by a sleep of 0.05 to 0.35 s per evaluation
(set by the program's hash; the search is steered by the distance of each
program's update to AdamW's): the workers then use no CPU, and the figures show
the scheduling alone (the in-order consumption of results, the driver's own
work), even on a busy machine.

Run::

    .venv/bin/python benchmarks/bench_parallel.py                  # 48 evaluations, 2 repeats
    .venv/bin/python benchmarks/bench_parallel.py --evaluations 96 --steps 300 --repeats 3
    .venv/bin/python benchmarks/bench_parallel.py --in-flight 2    # no queue at 2 workers
    .venv/bin/python benchmarks/bench_parallel.py --ray            # Ray against the pool
    .venv/bin/python benchmarks/bench_parallel.py --sleep --evaluations 60
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


class SleepFitness:
    """No training: TargetFitness towards AdamW after a sleep of 0.05..0.35 s (program hash)."""

    def __init__(self):
        from optforge import zoo
        from optforge.search.fitness import TargetFitness

        self.base = TargetFitness(zoo.load("adamw"))

    def evaluate(self, program, stage, thresholds=None):
        import hashlib

        u = int(hashlib.sha1(program.hash.encode()).hexdigest()[:8], 16) / 2**32
        time.sleep(0.05 + 0.3 * u)
        return self.base.evaluate(program, stage, thresholds)


class Timed:
    """Wraps a backend: time the driver spends blocked waiting for a result."""

    def __init__(self, backend):
        self.backend, self.waited = backend, 0.0
        self.capacity = backend.capacity

    def submit(self, job):
        self.backend.submit(job)

    def pending(self):
        return self.backend.pending()

    def take_outcome(self):
        t = time.perf_counter()
        try:
            return self.backend.take_outcome()
        finally:
            self.waited += time.perf_counter() - t

    def take(self):
        o = self.take_outcome()
        return o.job, o.evaluation

    def close(self):
        self.backend.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--evaluations", type=int, default=48)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--in-flight", type=int, default=None,
                    help="jobs in flight in every run (default 2 x workers)")
    ap.add_argument("--ray", action="store_true",
                    help="also Ray at N workers (a local cluster on 127.0.0.1)")
    ap.add_argument("--sleep", action="store_true",
                    help="evaluations sleep instead of training: the scheduling alone")
    args = ap.parse_args()
    in_flight = args.in_flight or 2 * args.workers
    if in_flight < args.workers:
        ap.error("--in-flight must be at least --workers")

    import torch

    torch.set_num_threads(1)
    from optforge.runtime import make_backend
    from optforge.search import Search, SearchConfig
    from optforge.store import RunStore

    cfg = SearchConfig(seed=0, evaluations=args.evaluations, population=8, tournament=3,
                       tiers=[f"tiny:quadratic,digits_mlp@{args.steps}"], heldout="",
                       hurdle_percentile=0, simplify_top=0, promote_threshold=1e9)
    t = time.perf_counter()
    if args.sleep:
        fitness = SleepFitness()
    else:
        fitness = Search(cfg).build_fitness()
        for task in fitness.stages["tier0"].tasks:
            fitness.baseline("tier0", task)
    print(f"baselines tuned in {time.perf_counter() - t:.1f} s; cores: {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.2f}; {in_flight} jobs in flight in every run"
          + ("; evaluations sleep" if args.sleep else ""))

    from optforge import zoo
    from optforge.evaluation import Job

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
    sequences = set()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for i, (backend, workers) in enumerate(kinds if r % 2 == 0 else kinds[::-1]):
                queue = in_flight - workers
                if backend == "ray":
                    make_backend("ray", fitness, workers, queue=queue).close()  # warm workers
                path = Path(tmp) / f"run-{r}-{i}"
                with RunStore.create(path, "search", cfg.as_dict()) as store:
                    inner = make_backend(backend, fitness, workers, queue=queue)
                    timed = Timed(inner)
                    t = time.perf_counter()
                    result = Search(cfg, fitness=fitness, store=store, evaluator=timed).run()
                    wall = time.perf_counter() - t
                    timed.close()
                    n = result.counters["evaluated"]
                    rates[(backend, workers)].append(n / wall * 3600)
                    store_s += store.seconds
                    recorded = store.evaluations()
                    secs = [row[7] for row in recorded]
                    eval_s += sum(secs)
                    sequences.add(tuple((row[0], row[2]) for row in recorded))
                    held = (f", workers held a job {inner.busy / (wall * workers):.0%}"
                            if hasattr(inner, "busy") else "")
                    print(f"{backend} x{workers} (queue {queue}): {n} evaluations in "
                          f"{wall:.1f} s ({n / wall * 3600:.0f}/h), mean evaluation "
                          f"{sum(secs) / len(secs):.3f} s{held}, evaluating "
                          f"{sum(secs) / (wall * workers):.0%}, driver busy "
                          f"{1 - timed.waited / wall:.0%}, store {store.seconds * 1e3:.1f} ms")
    assert len(sequences) == 1, "runs with the same in-flight count evaluated different programs"
    base = statistics.median(rates[kinds[0]])
    for k in kinds:
        print(f"{k[0]} x{k[1]}: median {statistics.median(rates[k]):.0f} evaluations/hour")
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"every run evaluated the same {len(next(iter(sequences)))} programs in the same order")
    print(f"scaling process x{args.workers} / process x1: {med[kinds[1]] / base:.2f}x")
    if args.ray:
        print(f"Ray overhead at {args.workers} workers: "
              f"{med[kinds[1]] / med[kinds[2]] - 1:+.1%} (process rate / Ray rate - 1)")
    print(f"store overhead: {store_s:.3f} s in writes / {eval_s:.1f} s evaluating = "
          f"{store_s / eval_s:.3%}")


if __name__ == "__main__":
    main()
