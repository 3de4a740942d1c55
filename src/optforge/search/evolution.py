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
  rounded updates on fixed inputs at ``fingerprint_steps``) equals an
  evaluated one's joins the population with that evaluation, untrained
  (AutoML-Zero's functional-equivalence cache).

Counters: ``generated`` = ``invalid`` (mutation draws rejected by inference,
the limits or an unchanged hash, and children whose fingerprint cannot be
computed) + ``structural`` + ``behavioural`` + ``evaluated``.

Restarts: after ``restart_after`` evaluations without a new best, the
population is rebuilt from the initial programs or from the best so far
(``restart_from``), again topped up with mutants.

Invariance filters (:mod:`optforge.search.filters`, the ``accept`` hook): a
child that would be trained must pass them first; one that fails is counted
``filtered`` (and ``invalid``) and dropped, and so is any later child with its
fingerprint. ``filtered_by`` splits ``filtered`` by the filter that rejected
the fingerprint (the name before the first ``:`` of the hook's reason).
Initial programs are not filtered.

Islands (``islands`` > 1): that many populations of ``population`` each
(AutoML-Zero, FunSearch, PySR). Parents are drawn from the islands in turn,
and a child joins its parent's island; the initial programs join every
island. Every ``migrate_every`` evaluations each island's best (complete)
individual joins the next island (a ring); every ``reset_every`` evaluations
the island with the weakest best is emptied and restarted from the best
island's best individual (FunSearch's reset of the weaker half, one island at
a time).

MAP-Elites archive: every complete evaluation competes for a cell
:func:`cell` (state slots x uses ``sign`` x uses a second moment), which
keeps its fittest program. With probability ``archive_parent`` a parent is an
archive elite (uniform over cells) instead of a tournament winner.

The initial programs are submitted together (up to the evaluator's capacity),
so they train in parallel. Everything above is a function of the seed and the
results in submission order, so a resumed run (which replays them) rebuilds the islands and the
archive exactly.

Evaluations go through an :class:`~optforge.evaluation.Evaluator`; with
the inline one the cycle is sequential and a seed fixes the whole run. At most
:attr:`Evolution.window` jobs are in flight: the evaluator's capacity, capped at
half of all islands' places.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from ..evaluation import WORST, Evaluation, Evaluator, Job
from ..lang.errors import ProgramError
from ..lang.fingerprint import PROBE_STEPS
from ..lang.infer import check
from ..lang.ir import Call, Program, walk
from .filters import rejecting_filter
from .hurdles import Hurdles
from .mutate import MutationError, Mutator


def load_programs(specs: Sequence[str]) -> list[Program]:
    """Programs from zoo names or program files (:func:`optforge.zoo.resolve`); ValueError
    naming a missing or malformed file, KeyError an unknown zoo name."""
    from .. import zoo

    return [zoo.resolve(spec).program for spec in specs]


SECOND_MOMENT_OPS = frozenset({"sqrt", "rsqrt", "square"})


def cell(program: Program) -> tuple[int, bool, bool]:
    """The MAP-Elites cell of a program: (state slots, capped at 4; reads ``sign``;
    uses a second moment: ``sqrt``/``rsqrt``/``square`` or a product ``x * x``)."""
    calls = [n for a in program.body for n in walk(a.expr) if isinstance(n, Call)]
    calls += [n for e in program.returns for n in walk(e) if isinstance(n, Call)]
    ops = {c.op for c in calls}
    square = any(c.op == "mul" and len(c.args) == 2 and c.args[0] == c.args[1] for c in calls)
    return (min(len(program.slots), 4), "sign" in ops, bool(ops & SECOND_MOMENT_OPS) or square)


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
    filtered: int = 0  # children rejected by the invariance filters (counted in invalid too)
    filtered_by: dict[str, int] = field(default_factory=dict)  # filter name -> children it rejected
    migrations: int = 0
    island_resets: int = 0

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
    islands: int = 1
    migrate_every: int = 0
    reset_every: int = 0
    archive_parent: float = 0.0
    fingerprint_steps: tuple[int, ...] = PROBE_STEPS  # the behavioural cache's probe

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
        if self.islands < 1 or self.migrate_every < 0 or self.reset_every < 0:
            raise ValueError("islands must be >= 1, migrate_every and reset_every >= 0")
        if not 0 <= self.archive_parent <= 1:
            raise ValueError(f"archive_parent must be in [0, 1], got {self.archive_parent}")


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
    islands: list[list[int]] = field(default_factory=list)  # individual ids per island
    archive: dict[tuple[int, bool, bool], Individual] = field(default_factory=dict)

    @property
    def best(self) -> Individual | None:
        ranked = [i for i in self.individuals.values() if i.evaluation.complete]
        return max(ranked, key=lambda i: (i.fitness, -i.id), default=None)


class Evolution:
    """One regularized-evolution run on one stage (see the module docstring)."""

    def __init__(self, config: EvolutionConfig, stage: str, evaluator: Evaluator,
                 mutator: Mutator, rng: random.Random, hurdles: Hurdles | None = None,
                 on_progress: Callable[[Progress], None] | None = None,
                 accept: Callable[[Program], str | None] | None = None):
        """``accept(program)`` returns why a child is rejected before training, ``NAME:
        why`` (the rejection is counted under ``NAME`` in ``filtered_by``), or None (the
        invariance filters, :func:`optforge.search.filters.reject`)."""
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
        self.islands: list[deque[Individual]] = [deque() for _ in range(config.islands)]
        self.archive: dict[tuple[int, bool, bool], Individual] = {}
        self.accept = accept
        self._rejected: dict[str, str] = {}  # fingerprint -> the filter that rejected it
        self._turn = 0  # the island the next parent comes from
        self.history: list[tuple[int, float]] = []
        self._pending: dict[int, tuple[Program, str, str, int | None, str, int | None]] = {}
        self._pending_hash: set[str] = set()
        self._waiting: dict[str, list[tuple[Program, str, int | None, str, int | None]]] = {}
        self._next_id = 0
        self._best = WORST
        self._since_best = 0
        self._start = time.perf_counter()
        self._submitted = 0

    @property
    def window(self) -> int:
        """Jobs kept in flight: the evaluator's capacity, at most half of all islands'
        places (a larger window breeds most children from a population that has not
        seen their siblings' results: duplicates and filtered children flood the driver,
        benchmarks/bench_in_flight.py)."""
        return min(self.evaluator.capacity,
                   max(1, self.config.population * self.config.islands // 2))

    @property
    def population(self) -> list[Individual]:
        """Every island's members, island by island (oldest first within each)."""
        return [ind for isl in self.islands for ind in isl]

    # ------------------------------------------------------------ proposals
    def propose(self, program: Program, parent: int | None, mutation: str,
                island: int | None = None) -> None:
        """Route a valid candidate through the caches and filters to its island (None: every
        island) or the evaluator."""
        self.counters.generated += 1
        h = program.hash
        if h in self.by_hash or h in self._pending_hash:
            self.counters.structural += 1
            return
        try:
            fp = program.fingerprint(self.config.fingerprint_steps)
        except Exception:  # noqa: BLE001 - a program that cannot run the probe is invalid
            self.counters.invalid += 1
            return
        if fp in self.by_fingerprint:
            self.counters.behavioural += 1
            source = self.individuals[self.by_fingerprint[fp]]
            self._admit(program, h, fp, source.evaluation, parent, mutation, reused=True,
                        island=island)
            return
        if fp in self._waiting:  # an equivalent program is being evaluated right now
            self.counters.behavioural += 1
            self._pending_hash.add(h)
            self._waiting[fp].append((program, h, parent, mutation, island))
            return
        if mutation != "init" and self.accept is not None:
            name = self._rejected.get(fp) or rejecting_filter(self.accept(program))
            if name is not None:
                c = self.counters
                c.invalid += 1
                c.filtered += 1
                c.filtered_by[name] = c.filtered_by.get(name, 0) + 1
                self._rejected[fp] = name
                return
        key = self._new_id()
        self._pending[key] = (program, h, fp, parent, mutation, island)
        self._pending_hash.add(h)
        self._waiting[fp] = []
        self._submitted += 1
        self.evaluator.submit(Job(key, program, self.stage, self.hurdles.thresholds()))

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _admit(self, program: Program, h: str, fp: str, evaluation: Evaluation,
               parent: int | None, mutation: str, reused: bool, ident: int | None = None,
               island: int | None = None) -> Individual:
        ind = Individual(self._new_id() if ident is None else ident, program, h, fp, evaluation,
                         parent, mutation, self.counters.generated, reused)
        self.individuals[ind.id] = ind
        self.by_hash[h] = ind.id
        for i in range(len(self.islands)) if island is None else (island,):
            self._join(i, ind)
        if evaluation.complete and evaluation.fitness > WORST:
            c = cell(program)
            old = self.archive.get(c)
            if old is None or evaluation.fitness > old.fitness:
                self.archive[c] = ind
        return ind

    def _join(self, island: int, ind: Individual) -> None:
        pop = self.islands[island]
        pop.append(ind)
        while len(pop) > self.config.population:
            pop.popleft()

    def _collect(self) -> None:
        """Take one finished evaluation and admit it (and any equivalent waiting children)."""
        job, evaluation = self.evaluator.take()
        program, h, fp, parent, mutation, island = self._pending.pop(job.key)
        self._pending_hash.discard(h)
        c = self.counters
        c.evaluated += 1
        c.hurdle_stopped += not evaluation.complete
        c.diverged += evaluation.diverged
        c.errors += evaluation.error is not None
        self.hurdles.record(evaluation.checkpoints)
        ind = self._admit(program, h, fp, evaluation, parent, mutation, reused=False,
                          ident=job.key, island=island)
        self.by_fingerprint[fp] = ind.id
        for w_program, w_h, w_parent, w_mutation, w_island in self._waiting.pop(fp, []):
            self._pending_hash.discard(w_h)
            self._admit(w_program, w_h, fp, evaluation, w_parent, w_mutation, reused=True,
                        island=w_island)
        if evaluation.complete and evaluation.fitness > self._best:
            self._best = evaluation.fitness
            self._since_best = 0
        else:
            self._since_best += 1
        self.history.append((c.evaluated, self._best))
        self._islands_step(c.evaluated)
        if self.on_progress is not None:
            self.on_progress(Progress(c, self.config.evaluations, self._best,
                                      time.perf_counter() - self._start))

    # ------------------------------------------------------------ islands
    @staticmethod
    def _best_of(members) -> Individual | None:
        return max((i for i in members if i.evaluation.complete and i.fitness > WORST),
                   key=lambda i: (i.fitness, -i.id), default=None)

    def _islands_step(self, evaluated: int) -> None:
        """Migration and reset of the weakest island, at their periods."""
        cfg, n = self.config, len(self.islands)
        if n < 2:
            return
        if cfg.migrate_every and evaluated % cfg.migrate_every == 0:
            bests = [self._best_of(isl) for isl in self.islands]
            for i, b in enumerate(bests):
                dest = (i + 1) % n  # a best already there (it migrated before) is not copied
                if b is not None and all(x.id != b.id for x in self.islands[dest]):
                    self._join(dest, b)
                    self.counters.migrations += 1
        if cfg.reset_every and evaluated % cfg.reset_every == 0:
            bests = [self._best_of(isl) for isl in self.islands]
            ranked = sorted((b.fitness, -b.id, i) for i, b in enumerate(bests) if b is not None)
            if len(ranked) == n:
                weakest, best = ranked[0][2], bests[ranked[-1][2]]
                self.islands[weakest].clear()
                self._join(weakest, best)
                self.counters.island_resets += 1

    # ------------------------------------------------------------ the loop
    def _mutant(self, parent: Individual, island: int | None = None) -> None:
        before = self.mutator.rejected
        try:
            child, kind = self.mutator.mutate(parent.program)
        except MutationError:
            child = None
        rejected = self.mutator.rejected - before
        self.counters.generated += rejected
        self.counters.invalid += rejected
        if child is not None:
            self.propose(child, parent.id, kind, island)

    def _next_parent(self) -> None:
        """One child of the next island's tournament winner (or of an archive elite)."""
        island = self._turn % len(self.islands)
        self._turn += 1
        if self.config.archive_parent and self.archive and \
                self.rng.random() < self.config.archive_parent:
            parent = self.archive[self.rng.choice(sorted(self.archive))]
        else:
            parent = self._tournament(island)
        self._mutant(parent, island if len(self.islands) > 1 else None)

    def _tournament(self, island: int = 0) -> Individual:
        pool = list(self.islands[island] or self.population)
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
        """Top the populations up to their size with mutants of ``seeds``."""
        n = len(self.islands)
        while (len(self.population) + self.evaluator.pending() < self.config.population * n
               and self._budget_left()):
            if self.evaluator.pending() >= self.window:
                self._collect()
                continue
            island = self._turn % n
            self._turn += 1
            self._mutant(self.rng.choice(seeds), island if n > 1 else None)
        while self.evaluator.pending():
            self._collect()

    def _restart(self, initial: list[Individual]) -> None:
        self.counters.restarts += 1
        if self.config.restart_from == "initial":
            seeds = [self.individuals[i.id] for i in initial]
        else:
            seeds = [max((i for i in self.individuals.values() if i.evaluation.complete),
                         key=lambda i: (i.fitness, -i.id))]
        for island in self.islands:
            island.clear()
            island.extend(seeds[-self.config.population:])
        self._since_best = 0
        self._fill(seeds)

    def run(self, programs: Sequence[Program]) -> EvolutionResult:
        """Evolve from ``programs`` until the evaluation budget (or a limit) is spent."""
        if not programs:
            raise ValueError("evolution needs at least one initial program")
        for p in programs:
            try:
                check(p)
                p.fingerprint(self.config.fingerprint_steps)
            except ProgramError as err:
                raise ValueError(f"initial program {p.name!r} is invalid: {err}") from None
            except Exception as err:
                raise ValueError(f"initial program {p.name!r} cannot run: "
                                 f"{type(err).__name__}: {err}") from err
        for p in programs:  # evaluated in parallel (up to capacity), admitted in order
            if self.evaluator.pending() >= self.window:
                self._collect()
            self.propose(p, None, "init")
        while self.evaluator.pending():
            self._collect()
        initial_ids = list(dict.fromkeys(self.by_hash[p.hash] for p in programs
                                         if p.hash in self.by_hash))
        initial = [self.individuals[i] for i in initial_ids]
        if not initial:
            raise ValueError("no distinct initial program could be evaluated")
        self._fill(initial)
        cfg = self.config
        while self._budget_left():
            if self.evaluator.pending() < self.window:
                self._next_parent()
                continue
            self._collect()
            if cfg.restart_after and self._since_best >= cfg.restart_after and self._best > WORST:
                self._restart(initial)
        while self.evaluator.pending():
            self._collect()
        return EvolutionResult(dict(self.individuals), list(self.population), initial,
                               self.counters, list(self.history),
                               [[i.id for i in isl] for isl in self.islands], dict(self.archive))

