"""The funnel: tiers of increasing cost, promotion by beating the baseline.

Evolution scores everything on the first (cheapest) tier. The funnel then
takes the hall of fame and, tier by tier, promotes the candidates whose
complete evaluation beats the baseline (fitness ``> threshold``, 0 by default:
a lower final loss than tuned AdamW), at most ``max_promote`` per tier, the
fittest first. Promoted candidates are evaluated on the next tier; those that
beat the baseline on the last tier are the survivors. With a single tier the
survivors are the first tier's candidates that beat the baseline. ``stop``
(checked before each climb) ends the funnel early: the survivors are then those
of the last stage reached.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..evaluation import Evaluation, Evaluator, Job
from .results import Candidate


@dataclass
class Survivor:
    candidate: Candidate
    fitness: dict[str, float]  # stage name -> fitness
    evaluations: dict[str, Evaluation] = field(default_factory=dict)


@dataclass
class FunnelResult:
    survivors: list[Survivor]
    records: list[dict]
    promotions: int
    stopped: bool = False  # ``stop`` ended it before the last stage


def passes(evaluation: Evaluation, threshold: float) -> bool:
    return evaluation.complete and math.isfinite(evaluation.fitness) and \
        evaluation.fitness > threshold


def evaluate_all(evaluator: Evaluator, jobs: Sequence[Job]) -> dict[int, Evaluation]:
    """Run ``jobs`` through ``evaluator`` (keeping at most ``capacity`` in flight)."""
    out: dict[int, Evaluation] = {}
    todo = list(jobs)
    while todo or evaluator.pending():
        while todo and evaluator.pending() < evaluator.capacity:
            evaluator.submit(todo.pop(0))
        job, evaluation = evaluator.take()
        out[job.key] = evaluation
    return out


def run_funnel(candidates: Sequence[Candidate], stages: Sequence[str], evaluator: Evaluator,
               threshold: float = 0.0, max_promote: int = 8,
               stop: Callable[[], bool] | None = None) -> FunnelResult:
    """Promote ``candidates`` (scored on ``stages[0]``) through the later stages."""
    if not stages:
        raise ValueError("the funnel needs at least one stage")
    if max_promote < 1:
        raise ValueError(f"max_promote must be >= 1, got {max_promote}")
    first = stages[0]
    current = [Survivor(c, {first: c.fitness}, {first: c.evaluation}) for c in candidates]
    records = [{"id": s.candidate.id, "stage": first, "fitness": s.candidate.fitness}
               for s in current]
    promotions = 0
    reached, stopped = first, False
    for prev, stage in zip(stages, stages[1:], strict=False):
        if stop is not None and stop():
            stopped = True
            break
        chosen = _choose(current, prev, threshold, max_promote)
        promotions += len(chosen)
        results = evaluate_all(evaluator, [Job(s.candidate.id, s.candidate.program, stage)
                                           for s in chosen])
        for s in chosen:
            e = results[s.candidate.id]
            s.fitness[stage] = e.fitness
            s.evaluations[stage] = e
            records.append({"id": s.candidate.id, "stage": stage, "fitness": e.fitness,
                            "promoted_from": prev})
        current, reached = chosen, stage
    survivors = [s for s in current if passes(s.evaluations[reached], threshold)]
    survivors.sort(key=lambda s: -s.fitness[reached])
    return FunnelResult(survivors, records, promotions, stopped)


def _choose(current: list[Survivor], stage: str, threshold: float, n: int) -> list[Survivor]:
    ok = [s for s in current if passes(s.evaluations[stage], threshold)]
    ok.sort(key=lambda s: (-s.fitness[stage], s.candidate.id))
    return ok[:n]
