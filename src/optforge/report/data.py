"""A search run directory read back from its store: what the report and the export need.

:func:`load_run` opens ``RUN_DIR/run.sqlite`` read-only (a run still being
written, or one that was killed, is fine) and rebuilds:

* the individuals the search met (``individuals`` + ``programs``), each with its
  first-tier evaluation (``evaluations`` with ``key`` = its id and stage
  ``tier0``; an individual taken from the behavioural cache gets the evaluation
  of the evaluated individual with its fingerprint, as the search gave it);
* the hall of fame and the Pareto front, by the search's own functions
  (:func:`optforge.search.results.hall_of_fame` and ``pareto_front``) over them;
  with a selection suite the hall of fame in its order, as the search gives it
  (``by_selection`` over the ``selection`` evaluations of the funnel);
* the evolution's evaluations in the order the search consumed them, and the
  population after each (``snapshots``);
* the funnel (evaluations on the later tiers and the selection suite), the
  held-out evaluations, and the winners (from ``result.json``, written when a
  run finishes).

Nothing is written. A directory that is not a search run raises
:class:`~optforge.store.db.StoreError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..evaluation import WORST, Evaluation
from ..lang.errors import ProgramError
from ..lang.ir import Program
from ..search.evolution import Individual
from ..search.results import Candidate, by_selection, hall_of_fame, pareto_front
from ..store.db import RunStore, StoreError


@dataclass(frozen=True)
class EvalRow:
    """One recorded evaluation."""

    seq: int
    key: int  # individual id; negative: simplification or held-out job
    hash: str
    stage: str
    fitness: float
    complete: bool
    status: str  # ok, error, timeout, lost
    seconds: float
    evaluation: Evaluation


@dataclass
class RunData:
    """Everything the report shows (see the module docstring)."""

    path: Path
    status: str  # "running" (still running, or stopped before the end) or "finished"
    config: dict
    created: float
    finished: float | None
    counters: dict
    sources: dict[str, str]  # program hash -> source
    individuals: dict[int, Individual]
    evaluations: list[EvalRow]  # every recorded evaluation, by seq
    population: list[tuple[int, list[int]]]  # (evaluated, ids) after each consumed result
    hall_of_fame: list[Candidate]
    pareto: list[Candidate]
    baselines: list  # meta "baselines" rows: task, size, steps, lr, final, checkpoints
    result: dict | None = None  # result.json, when the run finished
    events: list[tuple[float, str, dict]] = field(default_factory=list)
    distinct: list[Candidate] = field(default_factory=list)  # every complete behaviour, ranked

    @property
    def finished_ok(self) -> bool:
        return self.status == "finished" and self.result is not None

    @property
    def tiers(self) -> list[str]:
        """Stage names of the funnel tiers, cheapest first: ``tier0``, ``tier1``, ..."""
        return [f"tier{i}" for i in range(len(self.config.get("tiers", [])))]

    @property
    def funnel(self) -> list[str]:
        """The funnel's stages in the order a candidate climbs them: the tiers, then the
        selection suite (``selection``) when the run has one."""
        return [*self.tiers, *(["selection"] if self.config.get("selection", "").strip()
                               else [])]

    def stage_spec(self, stage: str) -> str:
        """The stage's ``SIZE:TASK,...[@STEPS]`` text from the configuration."""
        if stage in ("selection", "heldout"):
            return self.config.get(stage, "")
        if stage.startswith("tier") and stage[4:].isdigit():
            tiers = self.config.get("tiers", [])
            i = int(stage[4:])
            return tiers[i] if i < len(tiers) else "?"
        return "?"

    def evolution(self) -> list[EvalRow]:
        """The evolution's evaluations (first tier, individual jobs), in consumed order."""
        return [e for e in self.evaluations if e.stage == "tier0" and e.key >= 0]

    def winners(self) -> list[dict]:
        return list(self.result.get("winners", [])) if self.result else []

    def evaluations_of(self, program_hash: str) -> list[EvalRow]:
        return [e for e in self.evaluations if e.hash == program_hash]

    def lineage(self, ident: int) -> list[Individual]:
        """The chain of individuals from the warm start to ``ident``, oldest first."""
        chain: list[Individual] = []
        seen: set[int] = set()
        cur: int | None = ident
        while cur is not None and cur in self.individuals and cur not in seen:
            seen.add(cur)
            chain.append(self.individuals[cur])
            cur = self.individuals[cur].parent
        return chain[::-1]


def load_run(path: str | Path) -> RunData:
    """Read a search run directory (see the module docstring); :class:`StoreError` if it
    is not one."""
    path = Path(path)
    with RunStore.open(path, readonly=True) as store:
        if store.kind != "search":
            raise StoreError(f"{path} is a {store.kind} run, not a search run")
        config = store.config or {}
        programs = store.programs()
        sources = {h: src for h, (src, _) in programs.items()}
        fingerprints = {h: fp for h, (_, fp) in programs.items()}
        evaluations = [
            EvalRow(seq, key, h, stage, WORST if fit is None else fit, complete, status,
                    seconds, ev)
            for seq, key, h, stage, fit, complete, status, seconds, ev, _ in store.evaluations()]
        rows = store.individuals()
        snapshots = store.snapshots()
        events = store.events()
        status = store.meta("status") or "running"
        counters = store.meta("counters") or (snapshots[-1][2] if snapshots else {})
        created = float(store.meta("created", 0.0) or 0.0)
        finished = store.meta("finished")
        baselines = store.meta("baselines", []) or []
        result = store.result()

    individuals = _individuals(rows, sources, fingerprints, evaluations)
    fame = hall_of_fame(individuals.values(), int(config.get("hall_of_fame", 20)))
    if config.get("selection", "").strip():  # as the search orders it: by the selection suite
        fame = by_selection(fame, [{"id": e.key, "stage": e.stage, "fitness": e.fitness}
                                   for e in evaluations if e.stage == "selection" and e.key >= 0])
    everyone = hall_of_fame(individuals.values(), len(individuals))
    return RunData(path, status, config, created, finished, counters, sources, individuals,
                   evaluations, [(n, pop) for n, pop, _ in snapshots], fame,
                   pareto_front(everyone), baselines, result, events, everyone)


def _individuals(rows, sources: dict[str, str], fingerprints: dict[str, str | None],
                 evaluations: list[EvalRow]) -> dict[int, Individual]:
    own = {e.key: e.evaluation for e in evaluations if e.stage == "tier0" and e.key >= 0}
    by_fp: dict[str, Evaluation] = {}
    for ident, h, _parent, _mutation, _born, reused, _fit in rows:
        fp = fingerprints.get(h)
        if not reused and ident in own and fp and fp not in by_fp:
            by_fp[fp] = own[ident]
    out: dict[int, Individual] = {}
    for ident, h, parent, mutation, born, reused, fit in rows:
        try:
            program = Program.parse(sources[h])
        except (KeyError, ProgramError):
            continue  # cannot happen in a store written by optforge; skip rather than fail
        fp = fingerprints.get(h) or ""
        ev = own.get(ident) if not reused else by_fp.get(fp)
        if ev is None:  # no evaluation recorded: show the fitness, keep it out of rankings
            ev = Evaluation(WORST if fit is None or math.isnan(fit) else fit, complete=False)
        out[ident] = Individual(ident, program, h, fp, ev, parent, mutation, born, bool(reused))
    return out


def best_learning_rates(run: RunData, cand: Candidate) -> list[tuple[str, dict[str, float]]]:
    """``(stage, {task: best learning rate})`` for each complete evaluation of a candidate,
    in funnel order (the tiers cheapest first, the selection suite, the held-out stage; the
    search's learning-rate grid, one run per rate): its first-tier evaluation (its own, or
    the equivalent program's whose fitness it reused), then the jobs of its id (funnel) or
    its program (e.g. held out)."""
    order = {s: i for i, s in enumerate([*run.funnel, "heldout"])}
    seen: dict[str, dict[str, float]] = {}
    if cand.evaluation.complete and cand.evaluation.best_lr:
        seen["tier0"] = dict(cand.evaluation.best_lr)
    for e in run.evaluations:
        if (e.key == cand.id or e.hash == cand.hash) and e.complete and e.status == "ok" \
                and e.evaluation.best_lr and e.stage not in seen:
            seen[e.stage] = dict(e.evaluation.best_lr)
    return sorted(seen.items(), key=lambda kv: order.get(kv[0], len(order)))


def recommended_stages(rates: list[tuple[str, dict[str, float]]]) -> list[str]:
    """The stages :func:`recommended_lr` takes its rates from: the costliest tier the
    program reached and, when it was scored there, the selection suite (the search's
    validation: it ranks the hall of fame). Never the held-out stage, the test suite."""
    reached = [s for s, r in rates if r]
    tiers = [s for s in reached if s.startswith("tier") and s[4:].isdigit()]
    return [*tiers[-1:], *(["selection"] if "selection" in reached else [])]


def recommended_lr(rates: list[tuple[str, dict[str, float]]]) -> float | None:
    """The smallest of the best rates over the tasks of :func:`recommended_stages`: the
    safe choice, since a rate above a task's best is the one that risks divergence."""
    by_stage = dict(rates)
    best = [lr for s in recommended_stages(rates) for lr in by_stage[s].values()]
    return float(min(best)) if best else None
