"""When the compiled optimizer step pays for its build (``compile = "auto"``).

Building a program's kernel costs ``G`` seconds once per program (gcc; afterwards
the on-disk kernel cache answers in milliseconds, docs/COMPILE.md); the compiled step
then saves at least ``d`` seconds per training step. A unit of work that trains
``n`` steps with one program (a search evaluation: the steps of all its stage's
tasks) amortises the build when::

    n * d >= MARGIN * G      i.e.      n >= MIN_STEPS = MARGIN * G / d

Measured (BENCHMARKS.md, "Where it pays"; 1 thread, a loaded 2-core machine):
``G`` = 0.25 to 0.48 s for the zoo's programs (0.4 s taken), ``d`` = 0.41 to 0.82 ms
per step for AdamW with 14 replicas on the tiny evolution tasks (0.5 ms taken; larger
tiers save more, so the rule errs towards eager there). ``MARGIN`` = 2 leaves room
for hurdle-stopped evaluations, which train a fraction of ``n``. So ``MIN_STEPS`` =
1600: the short transfer configuration's evolution tier (7 tasks x 150 steps) runs
eagerly, the overnight one (7 x 400) and every ``small`` tier compiled.

The decision is a pure function of the configuration (never of timings or of what
the cache holds), so a search stays deterministic and a resumed run trains exactly
as the original did.
"""

from __future__ import annotations

import math

BUILD_SECONDS = 0.4
STEP_SAVING = 0.0005
MARGIN = 2.0
MIN_STEPS = math.ceil(MARGIN * BUILD_SECONDS / STEP_SAVING)
MODES = ("auto", "true", "false")


def mode(value: str | bool) -> str:
    """``"auto"``, ``"true"`` or ``"false"`` from a setting (a bool or one of those words);
    ValueError otherwise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    if text not in MODES:
        raise ValueError(f"compile must be 'auto', true or false, got {value!r}")
    return text


def compiles(value: str | bool, steps: int) -> bool:
    """Whether to run the compiled step for a unit of work of ``steps`` training steps with
    one program (``value``: the ``compile`` setting)."""
    m = mode(value)
    return m == "true" or (m == "auto" and steps >= MIN_STEPS)
