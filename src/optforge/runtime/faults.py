"""Fault injection for evaluator tests and demos: a fitness that crashes, hangs or raises.

``FaultyFitness(base, marker_dir)`` delegates to ``base`` except for programs
whose source contains a trigger word (the program's *name* is part of its
source, so a test names its victims ``die_once``, ``hang`` or ``boom``):

* ``die_once``: the first evaluation SIGKILLs its own process (a marker file in
  ``marker_dir`` remembers it happened, across processes); later ones succeed;
* ``die_always``: every evaluation SIGKILLs its process;
* ``hang``: sleeps for an hour;
* ``boom``: raises ``RuntimeError``;
* ``fails``: returns a failed evaluation (``-inf`` with an ``error``), as a fitness does
  for a program that cannot train;
* ``slow``: sleeps ``slow`` seconds (default 1), then evaluates.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from ..evaluation import WORST, Evaluation, Fitness
from ..lang.ir import Program


class FaultyFitness:
    def __init__(self, base: Fitness, marker_dir: str | Path, slow: float = 1.0):
        self.base, self.marker_dir, self.slow = base, Path(marker_dir), slow

    def evaluate(self, program: Program, stage: str,
                 thresholds: Mapping[str, float] | None = None) -> Evaluation:
        name = program.name
        if "die_once" in name:
            marker = self.marker_dir / hashlib.sha1(f"{name}{stage}".encode()).hexdigest()
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
        if "die_always" in name:
            os.kill(os.getpid(), signal.SIGKILL)
        if "hang" in name:
            time.sleep(3600)
        if "slow" in name:
            time.sleep(self.slow)
        if "boom" in name:
            raise RuntimeError(f"boom in {name}")
        if "fails" in name:
            return Evaluation(WORST, error=f"fails in {name}")
        return self.base.evaluate(program, stage, thresholds)
