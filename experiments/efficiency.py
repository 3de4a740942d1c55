"""The search's efficiency figures for any run directory (docs/EXPERIMENTS.md).

    python experiments/efficiency.py RUN_DIR [--workers 2]

Evaluations per hour during evolution (and replica-steps trained per hour, which does
not depend on how many tasks, rates and seeds an evaluation trains), the share of valid
children skipped by each cache, the invalid draws each invariance filter rejected, and the
share of worker time spent in fitness evaluations (training): sum of evaluation seconds /
(workers x wall) during evolution.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from run import efficiency, filtered


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    e = efficiency(args.run_dir, args.workers)
    c = e.pop("counters")
    print(json.dumps(e, indent=1))
    print(f"{e['evolution_evaluations']} evaluations in {e['evolution_wall'] / 60:.1f} min: "
          f"{e['evaluations_per_hour']:.0f}/hour ({e['replica_steps_per_hour'] / 1e6:.2f}M "
          f"replica-steps/hour); skipped: structural "
          f"{100 * e['structural_skips']:.1f}%, behavioural {100 * e['behavioural_skips']:.1f}% "
          f"of {e['valid_children']} valid children; {c['invalid']} invalid draws{filtered(c)}; "
          f"training share {100 * e['training_share']:.1f}%")


if __name__ == "__main__":
    main()
