"""Regularized evolution (Real et al., 2019) with the search's two caches.

The population is a queue of at most ``population`` individuals. Each cycle
samples ``tournament`` of them uniformly without replacement, mutates the
fittest (ties: the earliest sampled) and appends the child; the *oldest*
individual leaves, whatever its fitness (ageing). The first population is the
initial programs (warm start) topped up with their mutants.

Every proposed child goes through two caches before it costs any training:

* **structural**: a child whose canonical hash (:attr:`Program.hash`:
  invariant to names, dead code and commutative operand order) was seen
  before is *skipped*: not evaluated, not added to the population;
* **behavioural**: a child whose fingerprint (:meth:`Program.fingerprint`:
  rounded outputs on fixed inputs) equals an evaluated one's joins the
  population with that evaluation, untrained (AutoML-Zero's
  functional-equivalence cache).

Counters: ``generated`` = ``invalid`` (mutation draws rejected by inference,
the limits or an unchanged hash, and children whose fingerprint cannot be
computed) + ``structural`` + ``behavioural`` + ``evaluated``.

Restarts: after ``restart_after`` evaluations without a new best, the
population is rebuilt from the initial programs or from the best so far
(``restart_from``), again topped up with mutants.

Evaluations go through an :class:`~optforge.search.evaluator.Evaluator`; with
the inline one the cycle is sequential and a seed fixes the whole run.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..lang.errors import ProgramError
from ..lang.infer import check
from ..lang.ir import Program
from .evaluator import Evaluator, Job
from .fitness import WORST, Evaluation
from .hurdles import Hurdles
from .mutate import MutationError, Mutator


def load_programs(specs: Sequence[str]) -> list[Program]:
    """Programs from zoo names or program files (``*.py`` paths, parsed, never imported);
    ValueError naming a missing or malformed file, KeyError an unknown zoo name."""
    from .. import zoo

    return [Program.read(spec)[0] if spec.endswith(".py") or Path(spec).is_file()
            else zoo.load(spec) for spec in specs]


@dataclass
class Individual:
    """One distinct program met by the search, with its evaluation."""

    id: int
    program: Program
    hash: str
    fingerprint: str
    evaluation: Evaluation
    parent: int | None = None
    mutation: str = "init"
    born: int = 0  # value of ``generated`` when it joined
    reused: bool = False  # evaluation taken from the behavioural cache

    @property
    def fitness(self) -> float:
        return self.evaluation.fitness


@dataclass
class Counters:
    generated: int = 0
    invalid: int = 0
    structural: int = 0
    behavioural: int = 0
    evaluated: int = 0
    hurdle_stopped: int = 0
    diverged: int = 0
    errors: int = 0
    restarts: int = 0
    promotions: int = 0

    @property
    def skip_rate(self) -> float:
        """Share of valid children that cost no training (either cache)."""
        valid = self.structural + self.behavioural + self.evaluated
        return (self.structural + self.behavioural) / valid if valid else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "skip_rate": self.skip_rate}


@dataclass(frozen=True)
class EvolutionConfig:
    population: int = 32
    tournament: int = 8
    evaluations: int = 200
    restart_after: int = 0
    restart_from: str = "best"
    max_generated: int = 0
    time_limit: float = 0.0

    def __post_init__(self) -> None:
        if self.population < 2:
            raise ValueError(f"population must be >= 2, got {self.population}")
        if not 1 <= self.tournament <= self.population:
            raise ValueError(f"tournament must be in [1, population], got {self.tournament}")
        if self.evaluations < 1:
            raise ValueError(f"evaluations must be >= 1, got {self.evaluations}")
        if self.restart_after < 0 or self.max_generated < 0 or self.time_limit < 0:
            raise ValueError("restart_after, max_generated and time_limit must be >= 0")
        if self.restart_from not in ("best", "initial"):
            raise ValueError(f"restart_from must be 'best' or 'initial', got {self.restart_from!r}")


@dataclass
class Progress:
    """A snapshot for live displays."""

    counters: Counters
    budget: int
    best: float
    elapsed: float
    phase: str = "evolution"

    @property
    def eta(self) -> float | None:
        done = self.counters.evaluated
        if done == 0 or self.phase != "evolution":
            return None
        return self.elapsed / done * max(self.budget - done, 0)


@dataclass
class EvolutionResult:
    individuals: dict[int, Individual]
    population: list[Individual]
    initial: list[Individual]
    counters: Counters
    history: list[tuple[int, float]] = field(default_factory=list)  # (evaluated, best)

    @property
    def best(self) -> Individual | None:
        ranked = [i for i in self.individuals.values() if i.evaluation.complete]
        return max(ranked, key=lambda i: (i.fitness, -i.id), default=None)


class Evolution:
    """One regularized-evolution run on one stage (see the module docstring)."""

    def __init__(self, config: EvolutionConfig, stage: str, evaluator: Evaluator,
                 mutator: Mutator, rng: random.Random, hurdles: Hurdles | None = None,
                 on_progress: Callable[[Progress], None] | None = None):
        self.config = config
        self.stage = stage
        self.evaluator = evaluator
        self.mutator = mutator
        self.rng = rng
        self.hurdles = hurdles or Hurdles(percentile=0)
        self.on_progress = on_progress
        self.counters = Counters()
        self.individuals: dict[int, Individual] = {}
        self.by_hash: dict[str, int] = {}
        self.by_fingerprint: dict[str, int] = {}  # fingerprint -> first evaluated individual
        self.population: deque[Individual] = deque()
        self.history: list[tuple[int, float]] = []
        self._pending: dict[int, tuple[Program, str, str, int | None, str]] = {}
        self._pending_hash: set[str] = set()
        self._waiting: dict[str, list[tuple[Program, str, int | None, str]]] = {}
        self._next_id = 0
        self._best = WORST
        self._since_best = 0
        self._start = time.perf_counter()
        self._submitted = 0

    # ------------------------------------------------------------ proposals
    def propose(self, program: Program, parent: int | None, mutation: str) -> None:
        """Route a valid candidate through the caches to the population or the evaluator."""
        self.counters.generated += 1
        h = program.hash
        if h in self.by_hash or h in self._pending_hash:
            self.counters.structural += 1
            return
        try:
            fp = program.fingerprint()
        except Exception:  # noqa: BLE001 - a program that cannot run 3 steps is invalid
            self.counters.invalid += 1
            return
        if fp in self.by_fingerprint:
            self.counters.behavioural += 1
            source = self.individuals[self.by_fingerprint[fp]]
            self._admit(program, h, fp, source.evaluation, parent, mutation, reused=True)
            return
        if fp in self._waiting:  # an equivalent program is being evaluated right now
            self.counters.behavioural += 1
            self._pending_hash.add(h)
            self._waiting[fp].append((program, h, parent, mutation))
            return
        key = self._new_id()
        self._pending[key] = (program, h, fp, parent, mutation)
        self._pending_hash.add(h)
        self._waiting[fp] = []
        self._submitted += 1
        self.evaluator.submit(Job(key, program, self.stage, self.hurdles.thresholds()))

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _admit(self, program: Program, h: str, fp: str, evaluation: Evaluation,
               parent: int | None, mutation: str, reused: bool, ident: int | None = None
               ) -> Individual:
        ind = Individual(self._new_id() if ident is None else ident, program, h, fp, evaluation,
                         parent, mutation, self.counters.generated, reused)
        self.individuals[ind.id] = ind
        self.by_hash[h] = ind.id
        self.population.append(ind)
        while len(self.population) > self.config.population:
            self.population.popleft()
        return ind

    def _collect(self) -> None:
        """Take one finished evaluation and admit it (and any equivalent waiting children)."""
        job, evaluation = self.evaluator.take()
        program, h, fp, parent, mutation = self._pending.pop(job.key)
        self._pending_hash.discard(h)
        c = self.counters
        c.evaluated += 1
        c.hurdle_stopped += not evaluation.complete
        c.diverged += evaluation.diverged
        c.errors += evaluation.error is not None
        self.hurdles.record(evaluation.checkpoints)
        ind = self._admit(program, h, fp, evaluation, parent, mutation, reused=False,
                          ident=job.key)
        self.by_fingerprint[fp] = ind.id
        for w_program, w_h, w_parent, w_mutation in self._waiting.pop(fp, []):
            self._pending_hash.discard(w_h)
            self._admit(w_program, w_h, fp, evaluation, w_parent, w_mutation, reused=True)
        if evaluation.complete and evaluation.fitness > self._best:
            self._best = evaluation.fitness
            self._since_best = 0
        else:
            self._since_best += 1
        self.history.append((c.evaluated, self._best))
        if self.on_progress is not None:
            self.on_progress(Progress(c, self.config.evaluations, self._best,
                                      time.perf_counter() - self._start))

    # ------------------------------------------------------------ the loop
    def _mutant(self, parent: Individual) -> None:
        before = self.mutator.rejected
        try:
            child, kind = self.mutator.mutate(parent.program)
        except MutationError:
            child = None
        rejected = self.mutator.rejected - before
        self.counters.generated += rejected
        self.counters.invalid += rejected
        if child is not None:
            self.propose(child, parent.id, kind)

    def _tournament(self) -> Individual:
        pool = list(self.population)
        sample = self.rng.sample(pool, min(self.config.tournament, len(pool)))
        best = sample[0]
        for ind in sample[1:]:
            if ind.fitness > best.fitness:
                best = ind
        return best

    def _budget_left(self) -> bool:
        cfg = self.config
        if self._submitted >= cfg.evaluations:
            return False
        if cfg.time_limit and time.perf_counter() - self._start > cfg.time_limit:
            return False
        limit = cfg.max_generated or 50 * cfg.evaluations + 1000
        return self.counters.generated < limit

    def _fill(self, seeds: list[Individual]) -> None:
        """Top the population up to its size with mutants of ``seeds``."""
        while (len(self.population) + self.evaluator.pending() < self.config.population
               and self._budget_left()):
            if self.evaluator.pending() >= self.evaluator.capacity:
                self._collect()
                continue
            self._mutant(self.rng.choice(seeds))
        while self.evaluator.pending():
            self._collect()

    def _restart(self, initial: list[Individual]) -> None:
        self.counters.restarts += 1
        self.population.clear()
        if self.config.restart_from == "initial":
            seeds = [self.individuals[i.id] for i in initial]
        else:
            seeds = [max((i for i in self.individuals.values() if i.evaluation.complete),
                         key=lambda i: (i.fitness, -i.id))]
        self.population.extend(seeds[-self.config.population:])
        self._since_best = 0
        self._fill(seeds)

    def run(self, programs: Sequence[Program]) -> EvolutionResult:
        """Evolve from ``programs`` until the evaluation budget (or a limit) is spent."""
        if not programs:
            raise ValueError("evolution needs at least one initial program")
        initial_ids: list[int] = []
        for p in programs:
            try:
                check(p)
                p.fingerprint()
            except ProgramError as err:
                raise ValueError(f"initial program {p.name!r} is invalid: {err}") from None
            except Exception as err:
                raise ValueError(f"initial program {p.name!r} cannot run: "
                                 f"{type(err).__name__}: {err}") from err
            before = self._next_id
            self.propose(p, None, "init")
            while self.evaluator.pending():
                self._collect()
            if self._next_id > before:
                initial_ids.append(before)
        initial = [self.individuals[i] for i in initial_ids if i in self.individuals]
        if not initial:
            raise ValueError("no distinct initial program could be evaluated")
        self._fill(initial)
        cfg = self.config
        while self._budget_left():
            if self.evaluator.pending() < self.evaluator.capacity:
                self._mutant(self._tournament())
                continue
            self._collect()
            if cfg.restart_after and self._since_best >= cfg.restart_after and self._best > WORST:
                self._restart(initial)
        while self.evaluator.pending():
            self._collect()
        return EvolutionResult(dict(self.individuals), list(self.population), initial,
                               self.counters, list(self.history))

