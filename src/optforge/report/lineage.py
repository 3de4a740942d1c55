"""A program's ancestry: the chain of mutations from its warm start, with the diffs.

Each step is one mutation (``insert``, ``delete``, ``argument``, ``constant``)
from the parent's source to the child's, as a unified diff (:mod:`difflib`) of
the program text the search stored (printed without its docstring, which a warm
start may carry and mutants do not). For a funnel winner a last step shows the
simplification (the kept program -> its simplified form).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace

from .data import RunData


@dataclass(frozen=True)
class Step:
    """One link of the chain: the individual and its mutation (the page titles it ``#12
    insert``; ``ident`` None: the simplification), fitness, source and diff."""

    ident: int | None
    mutation: str
    fitness: float
    source: str
    diff: str  # unified diff from the previous step ('' for the warm start)
    reused: bool = False


def unified(before: str, after: str, old: str, new: str) -> str:
    """``difflib.unified_diff`` of two sources, as text."""
    return "".join(difflib.unified_diff(before.splitlines(keepends=True),
                                        after.splitlines(keepends=True), old, new, n=2))


def lineage(run: RunData, ident: int, simplified: str | None = None,
            simplified_fitness: float | None = None) -> list[Step]:
    """The steps from the warm-start ancestor to individual ``ident`` (and, when given, on
    to its ``simplified`` source)."""
    steps: list[Step] = []
    prev: tuple[int, str] | None = None
    for ind in run.lineage(ident):
        source = str(replace(ind.program, doc=None))
        diff = "" if prev is None else unified(prev[1], source, f"#{prev[0]}",
                                               f"#{ind.id} ({ind.mutation})")
        steps.append(Step(ind.id, ind.mutation, ind.fitness, source, diff, ind.reused))
        prev = (ind.id, source)
    if simplified is not None and prev is not None:
        steps.append(Step(None, "simplify", simplified_fitness if simplified_fitness is not None
                          else float("nan"), simplified,
                          unified(prev[1], simplified, f"#{prev[0]}", "simplified")))
    return steps
