"""What a search configuration will cost, stage by stage, before it starts.

One evaluation of a program on a stage trains one batched run per task of the
stage, ``len(lr_grid) x seeds_per_task`` replicas (a baseline tuning run: its grid, by default
``lr_grid``, times the seeds).
At most:

* baselines: one run per task of every stage (the first tier's before evolution);
* evolution: ``evaluations`` evaluations on the first tier (hurdles stop some early);
* funnel: ``promote_max`` evaluations on each later tier;
* (a baseline tuning: one per stage, counted as an evaluation)
* simplification: ``simplify_top x simplify_evaluations`` on the first tier;
* with a selection suite: each simplified program once more on it;
* held-out: ``simplify_top`` evaluations on the held-out stage.

The cost is counted in replica-steps (replicas x steps), the unit a CPU pays for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .config import SearchConfig


@dataclass(frozen=True)
class StageCost:
    """One stage of a search: evaluations, batched training runs and replica-steps, at most."""

    stage: str  # baselines, evolution, funnel, simplification, held-out
    where: str  # the stages it trains on
    evaluations: int
    runs: int
    replica_steps: int

    def as_dict(self) -> dict:
        return asdict(self)


def _stage_steps(stage) -> list[int]:
    from .. import tasks

    return [stage.steps or tasks.get(t).spec(stage.size).steps for t in stage.tasks]


def costs(cfg: SearchConfig) -> list[StageCost]:
    """The cost of every stage of ``cfg`` (see the module docstring)."""
    stages = cfg.stages()
    tiers = [s for n, s in stages.items() if n != "heldout"]  # the funnel ends on selection
    seeds = len(cfg.task_seeds)  # every rate is trained on each task seed, as replicas
    k, kb = len(cfg.lr_grid) * seeds, len(cfg.baseline_grid) * seeds

    def cost(stage: str, where, n: int, replicas: int = k) -> StageCost:
        steps = [s for st in where for s in _stage_steps(st)]
        return StageCost(stage, "; ".join(f"{st.name} {st}" for st in where), n * len(where),
                         n * len(steps), n * replicas * sum(steps))

    out = [cost("baselines", list(stages.values()), 1, kb),
           cost("evolution", tiers[:1], cfg.evaluations)]
    if len(tiers) > 1:
        out.append(cost("funnel", tiers[1:], cfg.promote_max))
    out.append(cost("simplification", tiers[:1], cfg.simplify_top * cfg.simplify_evaluations))
    if "selection" in stages:
        out.append(cost("selection (simplified)", [stages["selection"]], cfg.simplify_top))
    if "heldout" in stages:
        out.append(cost("held-out", [stages["heldout"]], cfg.simplify_top))
    return out


def describe(plan: list[StageCost]) -> list[str]:
    """One line per stage and a total: evaluations, runs, replica-steps and their share."""
    total = sum(c.replica_steps for c in plan) or 1
    lines = [f"{c.stage}: up to {c.evaluations} evaluation(s) = {c.runs} training runs, "
             f"{c.replica_steps:,} replica-steps ({c.replica_steps / total:.0%}) on {c.where}"
             for c in plan]
    lines.append(f"total: up to {sum(c.runs for c in plan)} training runs, {total:,} "
                 "replica-steps")
    return lines
