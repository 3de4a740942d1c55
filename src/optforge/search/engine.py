"""``Search(config).run()``: evolution, funnel, simplification, held-out check.

1. Warm start from ``config.init`` (zoo names or program files) and run
   regularized evolution (:mod:`.evolution`) on the first tier, with hurdles.
2. Hall of fame and Pareto front (:mod:`.results`) of everything evaluated.
3. Funnel (:mod:`.funnel`): the hall of fame climbs the tiers while it beats
   the baseline.
4. The best ``simplify_top`` survivors are simplified (:mod:`.simplify`) on
   the first tier (duplicates after simplification are dropped) and the
   simplified programs meet the held-out stage.

Example::

    from optforge.search import Search, SearchConfig
    result = Search(SearchConfig(evaluations=50, tiers=["tiny:quadratic@50"])).run()
    print(result.summary())
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import torch

from ..lang.ir import Program
from .config import SearchConfig
from .evaluator import Evaluator, InlineEvaluator, Job
from .evolution import Evolution, EvolutionConfig, Progress, load_programs
from .fitness import WORST, Fitness, TrainerFitness
from .funnel import evaluate_all, run_funnel
from .hurdles import Hurdles
from .mutate import MutationConfig, Mutator
from .results import Candidate, SearchResult, Winner, hall_of_fame, pareto_front
from .simplify import formula, simplify


class Search:
    """A configured search. ``fitness``/``evaluator`` replace the training-based defaults."""

    def __init__(self, config: SearchConfig | None = None, *, fitness: Fitness | None = None,
                 evaluator: Evaluator | None = None,
                 on_progress: Callable[[Progress], None] | None = None):
        self.config = config or SearchConfig()
        self._fitness = fitness
        self._evaluator = evaluator
        self.on_progress = on_progress
        self._keys = 0

    # ------------------------------------------------------------ parts
    def build_fitness(self) -> TrainerFitness:
        cfg = self.config
        cfg.check_tasks()
        (baseline,) = load_programs([cfg.baseline])
        return TrainerFitness(cfg.stages(), cfg.lr_grid, baseline, cfg.baseline_lr_grid,
                              cfg.hurdle_checkpoints if cfg.hurdle_percentile > 0 else (),
                              cfg.aggregate, cfg.divergence, cfg.task_seed, cfg.device,
                              getattr(torch, cfg.dtype))

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

    def _progress(self, counters, best: float, start: float, phase: str) -> None:
        if self.on_progress is not None:
            self.on_progress(Progress(counters, self.config.evaluations, best,
                                      time.perf_counter() - start, phase))

    # ------------------------------------------------------------ the run
    def run(self) -> SearchResult:
        cfg = self.config
        start = time.perf_counter()
        initial = load_programs(cfg.init)
        fitness = self._fitness or self.build_fitness()
        evaluator = self._evaluator or InlineEvaluator(fitness)
        stages = list(cfg.stages())
        tiers = [s for s in stages if s != "heldout"]
        rng = random.Random(cfg.seed)
        mutator = self.mutator(random.Random(rng.getrandbits(64)))
        evo_cfg = EvolutionConfig(cfg.population, cfg.tournament, cfg.evaluations,
                                  cfg.restart_after, cfg.restart_from, cfg.max_generated,
                                  cfg.time_limit)
        hurdles = Hurdles(cfg.hurdle_percentile, cfg.hurdle_warmup)
        evolution = Evolution(evo_cfg, tiers[0], evaluator, mutator, rng, hurdles,
                              self.on_progress)
        try:
            evolved = evolution.run(initial)
            counters = evolved.counters
            best = evolved.best.fitness if evolved.best else WORST
            individuals = list(evolved.individuals.values())
            fame = hall_of_fame(individuals, cfg.hall_of_fame)
            everyone = hall_of_fame(individuals, len(individuals))
            pareto = pareto_front(everyone)

            self._progress(counters, best, start, "funnel")
            funnel = run_funnel(fame, tiers, evaluator, cfg.promote_threshold, cfg.promote_max)
            counters.promotions = funnel.promotions

            winners: list[Winner] = []
            for survivor in funnel.survivors[:cfg.simplify_top]:
                self._progress(counters, best, start, "simplify")
                w = self._winner(survivor, evaluator, tiers[0], "heldout" in stages, mutator)
                if all(w.simplified.hash != other.simplified.hash for other in winners):
                    winners.append(w)
        finally:
            if self._evaluator is None:
                evaluator.close()
        baselines = {}
        if isinstance(fitness, TrainerFitness):
            baselines = {f"{task}/{size}/{steps}": {"lr": b.lr, "final": b.final,
                                                     "at": {str(k): v for k, v in b.at.items()}}
                         for (task, size, steps), b in sorted(fitness.baselines.items())}
        return SearchResult(fame, pareto, winners, counters.as_dict(), funnel.records,
                            evolved.history, baselines, cfg.as_dict(),
                            time.perf_counter() - start)

    def _winner(self, survivor, evaluator: Evaluator, first: str, heldout: bool,
                mutator: Mutator) -> Winner:
        """Simplify a survivor on the first tier; score the result on the held-out stage."""
        cfg = self.config
        cand: Candidate = survivor.candidate
        simp = simplify(cand.program, lambda p: self._score(evaluator, p, first),
                        cfg.simplify_tolerance, reference=cand.fitness,
                        prune_nodes=cfg.simplify_nodes, max_evaluations=cfg.simplify_evaluations,
                        valid=mutator.valid)
        held = None
        if heldout:
            self._keys += 1
            held = evaluate_all(evaluator, [Job(-self._keys, simp.program, "heldout")])[
                -self._keys]
        text, tex = formula(simp.program)
        return Winner(cand, simp.program, dict(survivor.fitness), simp.fitness, simp.edits, held,
                      text, tex)
