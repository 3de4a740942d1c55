"""Hall of fame, Pareto front, funnel promotion and the search configuration."""

from __future__ import annotations

import random
import tomllib
from dataclasses import fields

import pytest

from optforge.lang.ir import Program
from optforge.runtime import InlineBackend
from optforge.search.config import BASELINE_LR_GRID, LR_GRID, SearchConfig, flags
from optforge.search.evolution import Individual
from optforge.search.fitness import WORST, Evaluation, FunctionFitness, Stage
from optforge.search.funnel import run_funnel
from optforge.search.results import Candidate, hall_of_fame, pareto_front

SGD = Program.parse("def sgd(g, lr):\n    return lr * g\n")


def cand(i: int, fitness: float, length: int, slots: int) -> Candidate:
    return Candidate(i, SGD, fitness, length, slots, evaluation=Evaluation(fitness))


def brute_front(cands):
    """The definition: not dominated by any other candidate."""
    def dom(a, b):
        return (a.fitness >= b.fitness and a.length <= b.length and a.slots <= b.slots
                and (a.fitness > b.fitness or a.length < b.length or a.slots < b.slots))
    return {c.id for c in cands if not any(dom(o, c) for o in cands)}


def test_pareto_front_on_a_known_set():
    cs = [cand(0, 1.0, 10, 2), cand(1, 0.8, 5, 2), cand(2, 0.8, 5, 1), cand(3, 0.5, 3, 0),
          cand(4, 0.9, 12, 2), cand(5, 1.0, 10, 3), cand(6, -0.1, 2, 0), cand(7, 0.5, 3, 0),
          cand(8, WORST, 1, 0)]
    front = pareto_front(cs)
    # 1 is dominated by 2 (fewer slots), 4 by 0, 5 by 0, 7 ties 3 (the first stays),
    # 8 has no finite fitness
    assert [c.id for c in front] == [0, 2, 3, 6]


@pytest.mark.parametrize("seed", range(5))
def test_pareto_front_matches_the_definition(seed):
    rng = random.Random(seed)
    cs = [cand(i, rng.choice([0.0, 0.1, 0.2, 0.3, 0.5]), rng.randint(1, 6), rng.randint(0, 3))
          for i in range(60)]
    front = pareto_front(cs)
    expected = brute_front(cs)
    got = {c.id for c in front}
    assert got <= expected
    # ties in all three objectives keep one representative
    objectives = {(c.fitness, c.length, c.slots) for c in cs if c.id in expected}
    assert {(c.fitness, c.length, c.slots) for c in front} == objectives
    assert len(front) == len(objectives)


def ind(i, src, fitness, fp, complete=True):
    p = Program.parse(src)
    return Individual(i, p, p.hash, fp, Evaluation(fitness, complete=complete))


def test_hall_of_fame_ranks_complete_evaluations_one_per_behaviour():
    short = "def a(g, lr):\n    return lr * g\n"
    long_ = "def b(g, lr):\n    t = g * 1\n    return lr * t\n"
    other = "def c(g, lr):\n    return lr * sign(g)\n"
    inds = [ind(0, long_, 1.0, "fp1"), ind(1, short, 1.0, "fp1"), ind(2, other, 0.5, "fp2"),
            ind(3, other.replace("sign", "tanh"), 2.0, "fp3", complete=False),
            ind(4, other.replace("sign", "abs"), WORST, "fp4")]
    fame = hall_of_fame(inds, 10)
    assert [c.id for c in fame] == [1, 2]  # the shorter of two equal behaviours
    assert hall_of_fame(inds, 1)[0].id == 1
    assert fame[0].length == 1 and fame[0].slots == 0


def test_candidates_describe_the_live_program():
    p = Program.parse("""def f(w, g, m, d, lr, beta=0.9):
    m = interp(m, g, 1 - beta)
    d = d + 1
    junk = sqrt(w)
    return lr * m, m, d
""")
    c = Candidate.of(Individual(0, p, p.hash, "x", Evaluation(0.3)))
    assert c.slots == 1 and c.length == 3  # interp, sub, mul; the counter d and junk are dead
    assert "junk" not in c.source and c.as_dict()["fitness"] == 0.3


# ------------------------------------------------------------------ funnel


def test_promotion_moves_only_candidates_that_beat_the_baseline():
    table = {  # candidate id -> fitness on tier1, tier2
        0: {"tier1": 0.3, "tier2": 0.2}, 1: {"tier1": -0.1, "tier2": 0.9},
        2: {"tier1": 0.1, "tier2": -0.2}, 3: {"tier1": 0.5, "tier2": 0.05},
    }
    programs = {i: Program.parse(f"def p{i}(g, lr):\n    return {i + 1} * lr * g\n")
                for i in range(5)}
    owner = {p.hash: i for i, p in programs.items()}
    fit = FunctionFitness(lambda p, stage: table[owner[p.hash]][stage])
    first = [cand(i, f, 1, 0) for i, f in [(0, 0.4), (1, 0.2), (2, 0.3), (3, 0.1), (4, -0.5)]]
    first = [Candidate(c.id, programs[c.id], c.fitness, 1, 0, evaluation=Evaluation(c.fitness))
             for c in first]
    result = run_funnel(first, ["tier0", "tier1", "tier2"], InlineBackend(fit),
                        threshold=0.0, max_promote=3)
    # tier0 -> tier1: the best three of {0, 1, 2, 3} (4 trails the baseline)
    # tier1 -> tier2: 0 and 2 beat the baseline on tier1, 1 does not
    assert result.promotions == 3 + 2
    evaluated = [(r["id"], r["stage"]) for r in result.records if r["stage"] != "tier0"]
    assert sorted(evaluated) == [(0, "tier1"), (0, "tier2"), (1, "tier1"), (2, "tier1"),
                                 (2, "tier2")]
    assert [s.candidate.id for s in result.survivors] == [0]  # 2 fails tier2
    assert result.survivors[0].fitness == {"tier0": 0.4, "tier1": 0.3, "tier2": 0.2}


def test_incomplete_or_failed_evaluations_are_not_promoted():
    c1 = Candidate(1, SGD, 0.5, 1, 0, evaluation=Evaluation(0.5, complete=False))
    c2 = Candidate(2, SGD, 0.5, 1, 0, evaluation=Evaluation(0.5))
    fit = FunctionFitness(lambda p, stage: 1.0)
    result = run_funnel([c1, c2], ["tier0", "tier1"], InlineBackend(fit))
    assert [s.candidate.id for s in result.survivors] == [2] and result.promotions == 1
    one = run_funnel([c1, c2], ["tier0"], InlineBackend(fit))
    assert [s.candidate.id for s in one.survivors] == [2] and one.promotions == 0


# ------------------------------------------------------------------ config


def test_default_config_is_valid_and_round_trips_through_toml():
    c = SearchConfig()
    assert SearchConfig.from_dict(tomllib.loads(c.to_toml())) == c
    assert set(LR_GRID) <= set(BASELINE_LR_GRID)  # the finer grid, for configs that ask
    assert c.baseline_grid == c.lr_grid == LR_GRID  # by default the baseline's grid is ours


def test_flags_map_one_to_one_onto_fields():
    names = [f.name for f in fields(SearchConfig)]
    assert [f[1] for f in flags()] == names
    assert len({f[0] for f in flags()}) == len(names)
    assert flags()[names.index("max_length")][:2] == ("--max-length", "max_length")
    assert all(f[2] for f in flags())  # every field is documented


def test_config_files_and_overrides(tmp_path):
    path = tmp_path / "search.toml"
    path.write_text('seed = 3\ntiers = ["tiny:quadratic@50"]\nlr_grid = [1, 0.1]\n')
    c = SearchConfig.from_toml(path)
    assert c.seed == 3 and c.lr_grid == [1.0, 0.1] and c.stages()["tier0"].steps == 50
    assert c.override(population=10).population == 10
    path.write_text("sead = 3\n")
    with pytest.raises(ValueError, match="unknown search option"):
        SearchConfig.from_toml(path)
    with pytest.raises(ValueError, match="must be int"):
        SearchConfig.from_dict({"seed": "3"})
    with pytest.raises(ValueError, match="list of float"):
        SearchConfig.from_dict({"lr_grid": [1, "x"]})


@pytest.mark.parametrize("bad, match", [
    ({"tournament": 64}, "tournament"),
    ({"population": 0}, "population"),
    ({"new_slot": 2.0}, "probability"),
    ({"weight_insert": 0, "weight_delete": 0, "weight_argument": 0, "weight_constant": 0},
     "weights"),
    ({"ops": ["nope"]}, "unknown op"),
    ({"restart_from": "scratch"}, "restart_from"),
    ({"tiers": ["quadratic"]}, "SIZE:TASK"),
    ({"tiers": ["tiny:quadratic"], "heldout": "tiny:quadratic"}, "evolution and the test"),
    ({"tiers": ["tiny:quadratic"], "selection": "small:quadratic", "heldout": ""},
     "evolution and the selection"),
    ({"tiers": ["tiny:quadratic"], "selection": "tiny:digits_mlp", "heldout": "tiny:digits_mlp"},
     "selection and the test"),
    ({"seeds_per_task": 0}, "seeds_per_task"),
    ({"filters": ["scale", "nope"]}, "filters"),
    ({"islands": 0}, "islands"),
    ({"archive_parent": 1.5}, "archive_parent"),
    ({"hurdle_checkpoints": [1.5]}, "hurdle_checkpoints"),
    ({"lr_grid": [0.0]}, "lr_grid"),
    ({"require_inputs": ["x"]}, "require_inputs"),
])
def test_bad_configs_are_rejected_with_the_field_named(bad, match):
    with pytest.raises(ValueError, match=match):
        SearchConfig(**bad)


def test_stage_specs():
    s = Stage.parse("t", "small:a,b@300")
    assert (s.size, s.tasks, s.steps) == ("small", ("a", "b"), 300)
    assert str(s) == "small:a,b@300"
    for bad in ["tiny", "tiny:", ":a", "tiny:a@0", "tiny:a@x", "tiny:a,a"]:
        with pytest.raises(ValueError):
            Stage.parse("t", bad)


def test_unknown_tasks_are_reported_before_training():
    with pytest.raises(KeyError):
        SearchConfig(tiers=["tiny:no_such_task"]).check_tasks()
