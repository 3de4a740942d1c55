"""A program from a search run directory: rank N of its hall of fame, with its origin.

The run is read back by :func:`optforge.report.data.load_run` (the hall of fame
rebuilt from the store by the search's own ranking, with a selection suite in its
order), so ``optforge export RUN_DIR --rank N``, rank N of ``optforge report`` and of
the search's ``result.json`` are the same program. The recommended learning rate is
the smallest, over the tasks of the costliest tier the program reached and of the
selection suite when it was scored there (never the held-out test suite), of its best
rate on the search's grid (a rate above a task's best is the one that risks
divergence); every stage's best rates go into the docstring.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..lang.ir import Program
from .lower import ExportError
from .render import Origin

RULE = ("the costliest tier it reached, and the selection suite when it was scored there; "
        "never the held-out test suite")


def program_name(rank: int) -> str:
    return "discovered" if rank == 1 else f"discovered_rank{rank}"


def resolve_run(path: str | Path, rank: int = 1) -> tuple[Program, Origin]:
    """Rank ``rank`` (1 = the fittest) of the hall of fame of the run in ``path``."""
    from ..report.data import best_learning_rates, load_run, recommended_lr, recommended_stages
    from ..store.db import StoreError

    path = Path(path)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ExportError(f"rank must be a positive integer (1 = the fittest), got {rank!r}")
    try:
        run = load_run(path)
    except StoreError as err:
        raise ExportError(f"{path} is not a search run directory: {err}") from None
    fame = run.hall_of_fame
    unfinished = "" if run.finished_ok else " (the run is unfinished)"
    if not fame:
        raise ExportError(f"the run {path} has no complete evaluation yet, so its hall of fame "
                          f"is empty{unfinished}")
    if rank > len(fame):
        raise ExportError(f"rank {rank} is out of range: the hall of fame of {path} holds "
                          f"{len(fame)} program(s), ranks 1 to {len(fame)}{unfinished}")
    cand = fame[rank - 1]
    rates = best_learning_rates(run, cand)
    lr = recommended_lr(rates)
    p = cand.program
    program = Program(program_name(rank), p.params, p.hyper, p.body, p.returns, p.doc)
    notes = [f"Fitness = mean over the tasks of ln(tuned {run.config.get('baseline', 'adamw')} "
             f"loss / this program's loss) on tier0 ({run.stage_spec('tier0')}); > 0 beats "
             f"the baseline.{' The run was unfinished when exported.' if unfinished else ''}"]
    if rates:
        parts = ["; ".join(f"{t} {v:g}" for t, v in r.items()) for _, r in rates]
        notes.append("Best learning rates on the search's grid (cosine schedule, 5% warmup): "
                     + "; ".join(f"{s} ({run.stage_spec(s)}): {x}"
                                 for (s, _), x in zip(rates, parts, strict=True))
                     + (f". The recommended lr is the smallest of the best rates on "
                        f"{' and '.join(recommended_stages(rates))} ({RULE})."
                        if lr is not None else "."))
    init = ", ".join(map(str, run.config.get("init", []))) or "?"
    origin = Origin(source=f"an optforge search from {init}", run=str(path), rank=rank,
                    fitness=cand.fitness if math.isfinite(cand.fitness) else None,
                    notes=" ".join(notes), lr=lr)
    return program, origin

