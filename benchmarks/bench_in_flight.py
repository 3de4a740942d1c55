"""Training share against jobs in flight, with the search's short and long evaluations.

A search consumes results in submission order, so a worker idles when every job after
the oldest one in flight is done before it. That hurts most when evaluations differ
widely in length: on the transfer configuration about two thirds of the children are
hurdle-stopped, 10 to 50 times shorter than complete evaluations (docs/RUNS.md).

This runs the same small search (from AdamW, hurdles off) with the process pool at
``--workers`` (2), alternating the jobs in flight (``--in-flight``, default 4 and 8:
the old default queue of one per worker and the new one of three), ``--repeats``
times. Evaluations do not train: each sleeps ``--long`` seconds with probability
``1 - --short-share`` and ``--long / --ratio`` otherwise (drawn from the program's
hash), then scores the program's distance to AdamW. Sleeping workers use no CPU, so
the figures are the scheduling alone and hold on a loaded machine. Reported per run:
evaluations per hour and the training share as ``experiments/efficiency.py`` defines
it (evaluation seconds / (workers x wall)).

Run::

    .venv/bin/python benchmarks/bench_in_flight.py
    .venv/bin/python benchmarks/bench_in_flight.py --in-flight 2 4 8 12 --repeats 3
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path


class BimodalSleep:
    """Sleeps ``long`` (probability ``1 - short_share``) or ``long / ratio``, by program hash."""

    def __init__(self, long: float, ratio: float, short_share: float):
        from optforge import zoo
        from optforge.search.fitness import TargetFitness

        self.long, self.ratio, self.short_share = long, ratio, short_share
        self.base = TargetFitness(zoo.load("adamw"))

    def evaluate(self, program, stage, thresholds=None):
        u = int(hashlib.sha1(program.hash.encode()).hexdigest()[:8], 16) / 2**32
        time.sleep(self.long / self.ratio if u < self.short_share else self.long)
        return self.base.evaluate(program, stage, thresholds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--in-flight", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--evaluations", type=int, default=160)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--long", type=float, default=1.0)
    ap.add_argument("--ratio", type=float, default=20.0)
    ap.add_argument("--short-share", type=float, default=0.67)
    args = ap.parse_args()

    from optforge.runtime import make_backend
    from optforge.search import Search, SearchConfig
    from optforge.store import RunStore

    cfg = SearchConfig(seed=0, evaluations=args.evaluations, population=16, tournament=4,
                       tiers=["tiny:quadratic"], heldout="", hurdle_percentile=0,
                       simplify_top=0, promote_threshold=1e9)
    fitness = BimodalSleep(args.long, args.ratio, args.short_share)
    print(f"{args.workers} workers; evaluations sleep {args.long} s or {args.long / args.ratio} "
          f"s ({args.short_share:.0%} short)")
    from optforge import zoo
    from optforge.evaluation import Job

    warm = make_backend("process", fitness, 1)  # starts the fork server (once per process)
    warm.submit(Job(0, zoo.load("adamw"), "tier0"))
    warm.take()
    warm.close()
    shares: dict[int, list[float]] = {c: [] for c in args.in_flight}
    rates: dict[int, list[float]] = {c: [] for c in args.in_flight}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = args.in_flight if r % 2 == 0 else args.in_flight[::-1]
            for c in order:
                with RunStore.create(Path(tmp) / f"run-{r}-{c}", "search", cfg.as_dict(),
                                     in_flight=c) as store:
                    backend = make_backend("process", fitness, args.workers,
                                           queue=c - args.workers)
                    t = time.perf_counter()
                    result = Search(cfg, fitness=fitness, store=store, evaluator=backend).run()
                    wall = time.perf_counter() - t
                    backend.close()
                    secs = sum(row[7] for row in store.evaluations())  # seconds
                n = result.counters["evaluated"]
                shares[c].append(secs / (wall * args.workers))
                rates[c].append(3600 * n / wall)
                print(f"in flight {c}: {n} evaluations in {wall:.1f} s ({rates[c][-1]:.0f}/h), "
                      f"training share {shares[c][-1]:.1%}; children generated "
                      f"{result.counters['generated']} (filtered {result.counters['filtered']}, "
                      f"behavioural {result.counters['behavioural']})")
    base = args.in_flight[0]
    for c in args.in_flight:
        print(f"in flight {c}: median training share {statistics.median(shares[c]):.1%}, "
              f"evaluations/h x{statistics.median(rates[c]) / statistics.median(rates[base]):.2f}"
              f" against {base}")


if __name__ == "__main__":
    main()
