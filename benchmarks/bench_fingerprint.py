"""The behavioural fingerprint's probes, side by side: cost and how finely they split.

For every program of a run store's ``programs`` table (default: the transfer
experiment's), the three-step probe of runs stored before ``fingerprint_steps``
(``PROBE_STEPS_V1``) and the default probe (``PROBE_STEPS``) fingerprint it in
turn. Reported: whether the three-step probe reproduces the stored
fingerprints, the distinct behaviours under each, how many default-probe
behaviours span more than one three-step behaviour (0: a pure refinement), the
largest three-step class and its split, the same split with every ``eps`` set
to 1e-8 and at other rounding digits, and the mean milliseconds per program.

Run::

    .venv/bin/python benchmarks/bench_fingerprint.py [experiments/runs/transfer-cut]
"""

from __future__ import annotations

import argparse
import collections
import time

from optforge.lang import Program
from optforge.lang.fingerprint import PROBE_STEPS, PROBE_STEPS_V1, fingerprint
from optforge.store import RunStore


def _print(program: Program, steps=PROBE_STEPS, digits: int = 6) -> str | None:
    try:
        return fingerprint(program, steps, digits)
    except Exception:  # noqa: BLE001 - a program the probe cannot run (invalid in the search)
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", default="experiments/runs/transfer-cut")
    with RunStore.open(ap.parse_args().run, readonly=True) as store:
        rows = [(Program.parse(src), fp) for src, fp in store.programs().values()]
    seconds = {"old": 0.0, "new": 0.0}
    old, new = [], []
    for p, _ in rows:
        for name, steps, out in (("old", PROBE_STEPS_V1, old), ("new", PROBE_STEPS, new)):
            t0 = time.perf_counter()
            out.append(_print(p, steps))
            seconds[name] += time.perf_counter() - t0
    stored = [fp for _, fp in rows]
    print(f"programs {len(rows)}; three-step probe != stored fingerprint: "
          f"{sum(s is not None and s != o for s, o in zip(stored, old, strict=True))}")
    spans = collections.defaultdict(set)
    for o, n in zip(old, new, strict=True):
        spans[n].add(o)
    print(f"behaviours: three-step {len(set(old))}, default {len(set(new))}; default "
          f"behaviours spanning several three-step ones: {sum(len(v) > 1 for v in spans.values())}")
    print(f"ms per program: three-step {1e3 * seconds['old'] / len(rows):.2f}, "
          f"default {1e3 * seconds['new'] / len(rows):.2f}")
    big, size = collections.Counter(old).most_common(1)[0]
    cluster = [p for (p, _), o in zip(rows, old, strict=True) if o == big]
    print(f"largest three-step behaviour: {size} programs -> default probe "
          f"{len({_print(p) for p in cluster})}")
    flat = [p.with_hyper(eps=1e-8) if "eps" in p.hyperparameters else p for p in cluster]
    print(f"  with every eps = 1e-8: {len({_print(p) for p in flat})}")
    for digits in (5, 7):
        print(f"  at {digits} digits: {len({_print(p, digits=digits) for p in cluster})}")


if __name__ == "__main__":
    main()
