"""The invariance filters with and without ``weight``, side by side: cost and verdicts.

For every program of a run store's ``programs`` table (default: the transfer
experiment's), :func:`~optforge.search.filters.reject` runs in turn with the
four filters of runs stored before ``weight`` (``FILTERS_V1``) and with all of
them (``FILTERS``, the default). Reported: the mean milliseconds per program of
each and their ratio, and how many programs the four pass that ``weight``
rejects (the search would have dropped them before training).

Run::

    .venv/bin/python benchmarks/bench_filters.py [experiments/runs/transfer-cut]
"""

from __future__ import annotations

import argparse
import time

from optforge.lang import Program
from optforge.search.filters import FILTERS, FILTERS_V1, reject, rejecting_filter
from optforge.store import RunStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", default="experiments/runs/transfer-cut")
    with RunStore.open(ap.parse_args().run, readonly=True) as store:
        programs = [Program.parse(src) for src, _ in store.programs().values()]
    seconds = {FILTERS_V1: 0.0, FILTERS: 0.0}
    verdicts: dict[tuple[str, ...], list[str | None]] = {FILTERS_V1: [], FILTERS: []}
    for p in programs:
        for filters in (FILTERS_V1, FILTERS):  # in turn per program: the machine is noisy
            t0 = time.perf_counter()
            verdicts[filters].append(rejecting_filter(reject(p, filters)))
            seconds[filters] += time.perf_counter() - t0
    four, five = (1e3 * seconds[f] / len(programs) for f in (FILTERS_V1, FILTERS))
    print(f"programs {len(programs)}; ms per program: four filters {four:.2f}, "
          f"with weight {five:.2f} ({five / four:.2f}x, +{five - four:.2f} ms)")
    passed = [i for i, v in enumerate(verdicts[FILTERS_V1]) if v is None]
    caught = [i for i in passed if verdicts[FILTERS][i] == "weight"]
    print(f"passed by the four: {len(passed)}; of those rejected by weight: {len(caught)}")
    for i in caught[:3]:
        print(programs[i])


if __name__ == "__main__":
    main()
