"""``Search(config).run()``: evolution, funnel, simplification, held-out check.

1. Warm start from ``config.init`` (zoo names or program files) and run
   regularized evolution (:mod:`.evolution`) on the first tier, with hurdles,
   invariance filters (:mod:`.filters`), islands and a MAP-Elites archive.
2. Hall of fame and Pareto front (:mod:`.results`) of everything evaluated.
3. Funnel (:mod:`.funnel`): the hall of fame and the archive's elites climb
   the tiers, then the selection suite (``selection``), while they beat the
   baseline; with a selection suite the hall of fame is ordered by it.
4. The best ``simplify_top`` survivors are simplified (:mod:`.simplify`) on
   the first tier (duplicates after simplification are dropped) and the
   simplified programs meet the held-out stage (the test suite).

``time_limit`` (seconds, 0: none) bounds the whole run: evolution stops
generating children when it is spent; once it is spent, the funnel climbs no
further tier, no further survivor is simplified, and the held-out stage is
skipped (``counters["time_limited"]`` names the stages cut). The evaluations in
flight finish, so a run can overshoot by about one evaluation per stage.

Example::

    from optforge.search import Search, SearchConfig
    result = Search(SearchConfig(evaluations=50, tiers=["tiny:quadratic@50"])).run()
    print(result.summary())
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence

import torch

from ..evaluation import WORST, Evaluator, Fitness, Job
from ..lang.ir import Program
from ..runtime import InlineBackend, RecordingEvaluator
from .config import SearchConfig
from .evolution import Evolution, EvolutionConfig, Progress, cell, load_programs
from .filters import reject
from .fitness import TrainerFitness
from .funnel import evaluate_all, run_funnel
from .hurdles import Hurdles
from .mutate import MutationConfig, Mutator
from .results import Candidate, SearchResult, Winner, by_selection, hall_of_fame, pareto_front
from .simplify import formula, simplify


class Search:
    """A configured search. ``fitness``/``evaluator`` replace the training-based defaults."""

    def __init__(self, config: SearchConfig | None = None, *, fitness: Fitness | None = None,
                 evaluator: Evaluator | None = None,
                 on_progress: Callable[[Progress], None] | None = None,
                 store=None, caches: Sequence = (),
                 make_evaluator: Callable[[Fitness], Evaluator] | None = None):
        """``store`` (a :class:`~optforge.store.RunStore`) records the run and replays what it
        already holds (resume); ``caches`` are other runs' stores whose complete evaluations
        are reused; ``make_evaluator(fitness)`` builds the backend (default: inline)."""
        self.config = config or SearchConfig()
        self._fitness = fitness
        self._evaluator = evaluator
        self._make_evaluator = make_evaluator
        self.on_progress = on_progress
        self.store = store
        self.caches = list(caches)
        self._keys = 0
        self._start = time.perf_counter()

    # ------------------------------------------------------------ parts
    def build_fitness(self) -> TrainerFitness:
        cfg = self.config
        cfg.check_tasks()
        (baseline,) = load_programs([cfg.baseline])
        return TrainerFitness(cfg.stages(), cfg.lr_grid, baseline, cfg.baseline_grid,
                              cfg.hurdle_checkpoints if cfg.hurdle_percentile > 0 else (),
                              cfg.aggregate, cfg.divergence, cfg.task_seed, cfg.device,
                              getattr(torch, cfg.dtype), task_seeds=cfg.task_seeds,
                              compile=cfg.compile, relative=cfg.lr_grid_relative)

    def accept(self, program: Program) -> str | None:
        """Why the invariance filters reject ``program`` (None: it passes, or no filters)."""
        cfg = self.config
        return reject(program, cfg.filters, cfg.filter_tolerance) if cfg.filters else None

    def valid(self, mutator: Mutator) -> Callable[[Program], bool]:
        """The mutation constraints and the filters (for simplification's edits)."""
        return lambda p: mutator.valid(p) and self.accept(p) is None

    def mutator(self, rng: random.Random) -> Mutator:
        cfg = self.config
        mc = MutationConfig(weights=cfg.mutation_weights, max_length=cfg.max_length,
                            max_slots=cfg.max_slots, new_slot=cfg.new_slot,
                            ema_slot=cfg.ema_slot,
                            new_constant=cfg.new_constant, overwrite=cfg.overwrite,
                            ops=cfg.op_vocabulary, max_tries=cfg.max_tries,
                            require=tuple(cfg.require_inputs))
        return Mutator(mc, rng)

    def _score(self, evaluator: Evaluator, program: Program, stage: str) -> float:
        """Complete-evaluation fitness on ``stage`` (WORST when incomplete)."""
        self._keys += 1
        e = evaluate_all(evaluator, [Job(-self._keys, program, stage)])[-self._keys]
        return e.fitness if e.complete else WORST

    def _phase(self, counters, best: float, start: float, phase: str) -> None:
        """Enter ``phase``: tell the display and the run store."""
        if self.store is not None:
            self.store.set_meta(phase=phase)
            self.store.event("phase", phase=phase)
        self._progress(counters, best, start, phase)

    def _time_left(self, start: float) -> float:
        """Seconds left of ``time_limit`` (inf without one)."""
        limit = self.config.time_limit
        return limit - (time.perf_counter() - start) if limit else float("inf")

    def _progress(self, counters, best: float, start: float, phase: str) -> None:
        if self.on_progress is not None:
            self.on_progress(Progress(counters, self.config.evaluations, best,
                                      time.perf_counter() - start, phase))

    # ------------------------------------------------------------ the run
    def run(self) -> SearchResult:
        cfg = self.config
        start = self._start = time.perf_counter()
        initial = load_programs(cfg.init)
        fitness = self._fitness or self.build_fitness()
        if isinstance(fitness, TrainerFitness):
            self._baselines(fitness)
        evaluator = self._evaluator or (self._make_evaluator(fitness) if self._make_evaluator
                                        else InlineBackend(fitness))
        own = self._evaluator is None
        if self.store is not None:
            evaluator = self._recording(evaluator)
        stages = list(cfg.stages())
        tiers = [s for s in stages if s.startswith("tier")]
        funnel_stages = tiers + (["selection"] if "selection" in stages else [])
        rng = random.Random(cfg.seed)
        mutator = self.mutator(random.Random(rng.getrandbits(64)))
        left = self._time_left(start)  # the baselines took their share
        evo_cfg = EvolutionConfig(cfg.population, cfg.tournament, cfg.evaluations,
                                  cfg.restart_after, cfg.restart_from, cfg.max_generated,
                                  0.0 if left == float("inf") else max(left, 1e-9),
                                  cfg.islands, cfg.migrate_every, cfg.reset_every,
                                  cfg.archive_parent, tuple(cfg.fingerprint_steps))
        hurdles = Hurdles(cfg.hurdle_percentile, cfg.hurdle_warmup)
        evolution = Evolution(evo_cfg, tiers[0], evaluator, mutator, rng, hurdles,
                              self._snapshots(lambda: evolution, mutator),
                              accept=self.accept if cfg.filters else None)
        try:
            evolved = evolution.run(initial)
            if self.store is not None:
                self.store.add_individuals(list(evolved.individuals.values()))
            counters = evolved.counters
            best = evolved.best.fitness if evolved.best else WORST
            individuals = list(evolved.individuals.values())
            fame = hall_of_fame(individuals, cfg.hall_of_fame)
            everyone = hall_of_fame(individuals, len(individuals))
            pareto = pareto_front(everyone)

            cut: list[str] = []
            self._phase(counters, best, start, "funnel")
            archive = sorted((Candidate.of(i) for i in evolved.archive.values()),
                             key=lambda c: (-c.fitness, c.id))
            seen = {c.fingerprint for c in fame}
            elites = []  # one per behaviour: two cells may hold equivalent programs
            for c in archive:
                if c.fingerprint not in seen:
                    seen.add(c.fingerprint)
                    elites.append(c)
            funnel = run_funnel([*fame, *elites], funnel_stages, evaluator,
                                cfg.promote_threshold, cfg.promote_max,
                                stop=lambda: self._time_left(start) <= 0)
            if funnel.stopped:
                cut.append("funnel")
            counters.promotions = funnel.promotions
            if "selection" in stages:
                fame = by_selection(fame, funnel.records)

            winners: list[Winner] = []
            chosen = funnel.survivors[:cfg.simplify_top]
            if chosen:
                self._phase(counters, best, start, "simplify")
            for survivor in chosen:
                simplify_ok = self._time_left(start) > 0
                if not simplify_ok and "simplify" not in cut:
                    cut.append("simplify")
                heldout = "heldout" in stages and self._time_left(start) > 0
                if "heldout" in stages and not heldout and "heldout" not in cut:
                    cut.append("heldout")
                w = self._winner(survivor, evaluator, tiers[0], heldout, mutator, simplify_ok,
                                 "selection" in stages)
                if all(w.simplified.hash != other.simplified.hash for other in winners):
                    winners.append(w)
        finally:
            if own:
                evaluator.close()
        baselines = {}
        if isinstance(fitness, TrainerFitness):
            baselines = {f"{task}/{size}/{steps}": {"lr": b.lr, "final": b.final,
                                                     "at": {str(k): v for k, v in b.at.items()}}
                         for (task, size, steps), b in sorted(fitness.baselines.items())}
        counted = counters.as_dict()
        if cut:
            counted["time_limited"] = cut
        result = SearchResult(fame, pareto, winners, counted, funnel.records,
                              evolved.history, baselines, cfg.as_dict(),
                              time.perf_counter() - start,
                              [{"cell": list(cell(c.program)), "candidate": c} for c in archive],
                              evolved.islands)
        if self.store is not None:
            self._finish(result, evaluator)
        return result

    # ------------------------------------------------------------ the run store
    def _recording(self, backend: Evaluator) -> Evaluator:
        store = self.store
        in_flight = store.meta("in_flight")  # stored at creation by the command, if known
        if in_flight is None:
            in_flight = backend.capacity
            store.set_meta(in_flight=in_flight)
        store.begin(in_flight=in_flight)
        return RecordingEvaluator(store, backend, self.caches, capacity=in_flight)

    def _snapshots(self, evolution: Callable[[], Evolution], mutator: Mutator):
        """The progress hook: after each result, write (or, on replay, check) a snapshot."""
        if self.store is None:
            return self.on_progress
        from ..store import ReplayError
        from ..store.db import dumps

        store, written = self.store, set()

        def hook(progress: Progress) -> None:
            evo = evolution()
            n = progress.counters.evaluated
            population = [i.id for i in evo.population]
            rng = {"evolution": evo.rng.getstate(), "mutator": mutator.rng.getstate()}
            stored = store.snapshot_at(n)
            if stored is None:
                new = [i for k, i in evo.individuals.items() if k not in written]
                store.snapshot(n, population, rng, progress.counters.as_dict(), progress.best,
                               new)
                written.update(i.id for i in new)
            elif stored != (population, json.loads(dumps(rng))):
                raise ReplayError(f"{store.path}: the replayed search differs from the stored "
                                  f"one after {n} evaluations (population or random state); "
                                  "the code or the configuration changed")
            if self.on_progress is not None:
                self.on_progress(progress)

        return hook

    @staticmethod
    def _baseline_rows(fitness: TrainerFitness) -> list:
        return [[task, size, steps, b.lr, b.final, sorted(b.at.items())]
                for (task, size, steps), b in sorted(fitness.baselines.items())]

    def _baselines(self, fitness: TrainerFitness) -> None:
        """Tune the first tier's baselines in the driver (workers inherit them), kept in the
        store so that a resumed run does not train them again."""
        from .fitness import Baseline

        if self.store is not None:
            curves = self.store.meta("baseline_curves", {})
            for task, size, steps, lr, final, at in self.store.meta("baselines", []):
                curve = tuple((int(s), x) for s, x in curves.get(f"{task}/{size}/{steps}", []))
                fitness.baselines.setdefault((task, size, int(steps)),
                                             Baseline(lr, final, {float(f): v for f, v in at},
                                                      curve))
        if "tier0" in fitness.stages:
            for task in fitness.stages["tier0"].tasks:
                fitness.baseline("tier0", task)
        if self.store is not None:
            # the curves under their own key: a reader of the older rows is unaffected
            self.store.set_meta(baselines=self._baseline_rows(fitness), baseline_curves={
                f"{task}/{size}/{steps}": [list(p) for p in b.curve]
                for (task, size, steps), b in sorted(fitness.baselines.items())})

    def _finish(self, result: SearchResult, evaluator) -> None:
        best = result.best
        self.store.finish(result.to_json(),
                          {"best": None if best is None else best.fitness,
                           "counters": result.counters},
                          replayed=evaluator.replayed, computed=evaluator.computed,
                          reused=evaluator.reused, seconds=result.seconds)

    def _winner(self, survivor, evaluator: Evaluator, first: str, heldout: bool,
                mutator: Mutator, simplify_ok: bool = True, selection: bool = False) -> Winner:
        """Simplify a survivor on the first tier (unless the time limit is spent); score the
        result on the held-out stage (and, with a selection suite, the simplified program on
        it too)."""
        cfg = self.config
        cand: Candidate = survivor.candidate
        def fitness(p: Program) -> float:  # past the time limit: no more training
            return WORST if self._time_left(self._start) <= 0 else self._score(evaluator, p,
                                                                                  first)

        simp = simplify(cand.program, fitness,
                        cfg.simplify_tolerance, reference=cand.fitness,
                        prune_nodes=cfg.simplify_nodes,
                        max_evaluations=cfg.simplify_evaluations if simplify_ok else 0,
                        valid=self.valid(mutator))
        stage_fitness = dict(survivor.fitness)
        if (selection and simp.program.hash != cand.program.hash
                and self._time_left(self._start) > 0):
            stage_fitness["selection (simplified)"] = self._score(evaluator, simp.program,
                                                                  "selection")
        held = None
        if heldout:
            self._keys += 1
            held = evaluate_all(evaluator, [Job(-self._keys, simp.program, "heldout")])[
                -self._keys]
        text, tex = formula(simp.program)
        return Winner(cand, simp.program, stage_fitness, simp.fitness, simp.edits, held,
                      text, tex)
