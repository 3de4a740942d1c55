"""Regularized evolution, its caches and counters, warm start, restarts, hurdles."""

from __future__ import annotations

import math
import random
from collections import deque

import pytest

from optforge import zoo
from optforge.lang import ops
from optforge.lang.canon import eliminate_dead_code
from optforge.lang.ir import Const, Program, Var
from optforge.runtime import InlineBackend
from optforge.search.evolution import Evolution, EvolutionConfig, Individual, load_programs
from optforge.search.fitness import Evaluation, FunctionFitness, TargetFitness
from optforge.search.hurdles import Hurdles, key, trails
from optforge.search.mutate import MutationConfig, Mutator

TARGET = Program.parse("""def rms_momentum(g, m, v, lr):
    m = interp(m, g, 0.1)
    v = interp(v, g * g, 0.01)
    return lr * m / (sqrt(v) + 0.001), m, v
""")


def normal_form(p: Program):
    """An independent reading of 'equal after dead-code removal up to renaming':
    temporaries inlined, slots by position, hyperparameters by value, operands of
    commutative ops sorted."""
    p = eliminate_dead_code(p)
    env = {x: ("in", x) for x in p.inputs}
    env.update({s: ("slot", i) for i, s in enumerate(p.slots)})
    env.update({k: ("hyper", float(v)) for k, v in p.hyper})

    def tree(e):
        if isinstance(e, Var):
            return env[e.name]
        if isinstance(e, Const):
            return ("const", float(e.value))
        args = [tree(a) for a in e.args]
        if ops.REGISTRY[e.op].commutative:
            args.sort(key=repr)
        return (e.op, *args)

    for s in p.body:
        env[s.target] = tree(s.expr)
    return tuple(tree(e) for e in p.returns)


class Logged(Evolution):
    """Evolution that records what happened to every proposal and every admission."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.log: list[tuple[Program, str]] = []
        self.admitted: list[int] = []
        self.after_restart: list[tuple[int, list[int]]] = []

    def propose(self, program, parent, mutation, island=None):
        c = self.counters
        before = (c.structural, c.behavioural, c.invalid)
        super().propose(program, parent, mutation, island)
        after = (c.structural, c.behavioural, c.invalid)
        kind = ["structural", "behavioural", "invalid"]
        outcome = next((k for k, b, a in zip(kind, before, after, strict=True) if a > b),
                       "submitted")
        self.log.append((program, outcome))

    def _admit(self, *a, **kw):
        ind = super()._admit(*a, **kw)
        self.admitted.append(ind.id)
        return ind

    def _restart(self, initial):
        best = max((i for i in self.individuals.values() if i.evaluation.complete),
                   key=lambda i: (i.fitness, -i.id))
        super()._restart(initial)
        self.after_restart.append((best.id, [i.id for i in list(self.population)[:len(initial)]]))


def evolve(fitness, seed=0, init=("adamw",), evaluations=60, population=8, tournament=3,
           mutation=None, **kw) -> Logged:
    mutator = Mutator(mutation or MutationConfig(), random.Random(seed + 1000))
    evo = Logged(EvolutionConfig(population, tournament, evaluations, **kw), "stage",
                 InlineBackend(fitness), mutator, random.Random(seed))
    evo.result = evo.run(load_programs(list(init)))
    return evo


@pytest.fixture(scope="module")
def run() -> Logged:
    """One search that meets both caches (constant-free ops make duplicates likely)."""
    fitness = TargetFitness(TARGET)
    mc = MutationConfig(ops=("add", "mul", "sign", "sqrt", "interp"), new_constant=0.0)
    evo = evolve(fitness, seed=3, init=("adamw",), evaluations=80, mutation=mc)
    evo.fitness = fitness
    return evo


def test_counters_add_up_and_only_evaluations_cost_training(run):
    c = run.counters
    assert c.generated == c.invalid + c.structural + c.behavioural + c.evaluated
    assert c.evaluated == 80 == run.fitness.calls
    assert c.structural > 0 and c.behavioural > 0  # the run exercised both caches
    assert 0 < c.skip_rate < 1


def test_structural_skips_equal_a_seen_program(run):
    by_hash = {i.hash: i for i in run.individuals.values()}
    assert len(by_hash) == len(run.individuals)  # no program was admitted twice
    fresh = TargetFitness(TARGET)
    skipped = [p for p, outcome in run.log if outcome == "structural"]
    assert skipped
    for p in skipped:
        seen = by_hash[p.hash]
        assert normal_form(p) == normal_form(seen.program)
        assert p.fingerprint() == seen.fingerprint
        if seen.evaluation.complete and not seen.reused:
            assert fresh.evaluate(p).fitness == seen.fitness


def test_only_unseen_programs_are_admitted(run):
    seen: set[str] = set()
    for p, outcome in run.log:
        if outcome in ("submitted", "behavioural"):
            assert p.hash not in seen
        seen.add(p.hash)


def test_behavioural_reuse_only_for_equal_fingerprints(run):
    reused = [i for i in run.individuals.values() if i.reused]
    assert reused
    for ind in reused:
        source = run.individuals[run.by_fingerprint[ind.fingerprint]]
        assert not source.reused and source.hash != ind.hash
        assert ind.evaluation is source.evaluation
        assert ind.program.fingerprint() == source.program.fingerprint()
    evaluated_fps = [i.fingerprint for i in run.individuals.values() if not i.reused]
    assert len(evaluated_fps) == len(set(evaluated_fps))  # no behaviour was trained twice


def make_evolution(fitness, population=4, tournament=2):
    return Logged(EvolutionConfig(population, tournament, 10), "stage", InlineBackend(fitness),
                  Mutator(rng=random.Random(0)), random.Random(0))


def test_the_caches_on_hand_made_programs():
    fitness = FunctionFitness(lambda p, s: -len(str(p)))
    evo = make_evolution(fitness)
    base = Program.parse("def a(g, lr):\n    return lr * g\n")
    evo.propose(base, None, "init")
    evo._collect()
    # commutative operand order and names: the same structure, skipped
    evo.propose(Program.parse("def b(g, lr):\n    t = g\n    return t * lr\n"), None, "x")
    # a different structure with the same behaviour: reuses the fitness
    evo.propose(Program.parse("def c(g, lr):\n    return lr * (g * 1)\n"), None, "x")
    # different behaviour: evaluated
    evo.propose(Program.parse("def d(g, lr):\n    return 2 * lr * g\n"), None, "x")
    evo._collect()
    assert [o for _, o in evo.log] == ["submitted", "structural", "behavioural", "submitted"]
    assert fitness.calls == 2
    assert evo.counters.evaluated == 2 and evo.counters.structural == 1
    c = next(i for i in evo.individuals.values() if i.program.name == "c")
    a = next(i for i in evo.individuals.values() if i.program.name == "a")
    assert c.reused and c.fitness == a.fitness


def test_population_ages_out_the_oldest(run):
    assert len(run.population) == 8
    assert [i.id for i in run.population] == run.admitted[-8:]


def test_tournament_takes_the_fittest_of_a_uniform_sample():
    evo = make_evolution(FunctionFitness(lambda p, s: 0.0), population=6, tournament=3)
    inds = [Individual(i, None, str(i), str(i), Evaluation(f))  # type: ignore[arg-type]
            for i, f in enumerate([0.5, 2.0, -1.0, 3.0, 1.0, 0.0])]
    evo.islands[0] = deque(inds)
    for seed in range(20):
        evo.rng = random.Random(seed)
        expected = max(random.Random(seed).sample(inds, 3), key=lambda i: i.fitness)
        assert evo._tournament() is expected


def test_same_seed_same_search_other_seed_other_search():
    def trace(seed):
        evo = evolve(TargetFitness(TARGET), seed=seed, evaluations=25)
        return [(evo.individuals[i].hash, evo.individuals[i].fitness) for i in evo.admitted]

    a, b, c = trace(7), trace(7), trace(8)
    assert a == b
    assert a != c


@pytest.mark.parametrize("origin", ["initial", "best"])
def test_restarts_rebuild_the_population(origin):
    rough = FunctionFitness(lambda p, s: -len(str(p)) % 7)  # improves rarely
    evo = evolve(rough, init=("adamw",), evaluations=60, population=4, tournament=2,
                 restart_after=5, restart_from=origin)
    assert evo.counters.restarts >= 2
    first = evo.result.initial[0].id
    for best, ids in evo.after_restart:
        assert ids == ([first] if origin == "initial" else [best])
    if origin == "best":
        assert any(best != first for best, _ in evo.after_restart)


def test_warm_start_from_zoo_names_and_files(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text("def mine(g, lr):\n    return lr * sign(g)\n")
    a, b = load_programs(["adamw", str(f)])
    assert a == zoo.load("adamw") and b.name == "mine"
    with pytest.raises(FileNotFoundError):
        load_programs([str(tmp_path / "missing.py")])
    with pytest.raises(KeyError):
        load_programs(["no_such_optimizer"])
    bad = tmp_path / "bad.py"
    bad.write_text("def bad(g, lr):\n    return lr\n")
    evo = make_evolution(FunctionFitness(lambda p, s: 0.0))
    with pytest.raises(ValueError, match="invalid"):
        evo.run([Program(name="bad", params=("g", "lr"), hyper=(), body=(),
                         returns=(Var("lr"),))])


def test_budget_is_exact_and_duplicates_do_not_spend_it():
    evo = evolve(FunctionFitness(lambda p, s: -len(p.body)), evaluations=17)
    assert evo.counters.evaluated == 17


# ------------------------------------------------------------------ hurdles


def test_hurdle_is_the_lower_percentile_after_warmup():
    h = Hurdles(percentile=25, warmup=4)
    h.record({"t@0.5": 1.0})
    h.record({"t@0.5": 2.0})
    h.record({"t@0.5": 3.0})
    assert h.thresholds() == {}  # not warm yet
    h.record({"t@0.5": -math.inf})
    h.record({"t@0.5": 4.0, "t@0.25": 0.0})
    # scores -inf, 1, 2, 3, 4: the 25th percentile by the 'lower' rule is 1
    assert h.thresholds() == {"t@0.5": 1.0}
    assert trails(0.5, "t", 0.5, h.thresholds())
    assert not trails(1.0, "t", 0.5, h.thresholds())  # strictly below only
    assert not trails(-5.0, "t", 0.25, h.thresholds())  # no hurdle there yet
    assert trails(math.nan, "t", 0.5, h.thresholds())
    assert key("t", 0.5) == "t@0.5"
    assert Hurdles(percentile=0).thresholds() == {}


def test_hurdle_settings_are_checked():
    with pytest.raises(ValueError):
        Hurdles(percentile=120)
    with pytest.raises(ValueError):
        Hurdles(warmup=0)


def test_evolution_config_is_checked():
    with pytest.raises(ValueError, match="tournament"):
        EvolutionConfig(population=4, tournament=5)
    with pytest.raises(ValueError, match="restart_from"):
        EvolutionConfig(restart_from="never")

