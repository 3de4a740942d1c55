"""Selection suite, islands and the MAP-Elites archive, on a cheap fitness."""

from __future__ import annotations

from optforge.lang.ir import Program
from optforge.search import FunctionFitness, Search, SearchConfig
from optforge.search.evolution import cell

BASE = dict(evaluations=40, population=6, tournament=2, tiers=["tiny:quadratic@30"],
            heldout="", seed=2, simplify_top=2, simplify_evaluations=5, promote_max=5,
            promote_threshold=-100.0, filters=[])


def by_length(program: Program, stage: str) -> float:
    """Shorter is fitter on the evolution suite; on the selection suite longer is fitter."""
    n = len(str(program))
    return -n / 100 if stage.startswith("tier") else n / 100


def test_the_selection_suite_orders_the_hall_of_fame_and_picks_the_winners():
    result = Search(SearchConfig(**BASE, selection="tiny:digits_mlp@20"),
                    fitness=FunctionFitness(by_length)).run()
    sel = {r["id"]: r["fitness"] for r in result.funnel if r["stage"] == "selection"}
    assert len(sel) == 5  # promote_max candidates went to the selection suite
    scored = [c for c in result.hall_of_fame if c.id in sel]
    assert [c.id for c in result.hall_of_fame[:len(scored)]] == [c.id for c in scored]
    assert [sel[c.id] for c in scored] == sorted(sel.values(), reverse=True)
    # the evolution suite ranks the shortest first; the selection suite reverses that
    assert scored[0].fitness < scored[-1].fitness
    # the first winner is the selection suite's best (hall of fame or archive elite)
    assert result.winners[0].candidate.id == max(sel, key=sel.get)


def test_islands_migrate_reset_and_the_archive_keeps_one_elite_per_cell():
    cfg = SearchConfig(**{**BASE, "islands": 3, "migrate_every": 5, "reset_every": 12,
                          "archive_parent": 0.3, "evaluations": 60})
    result = Search(cfg, fitness=FunctionFitness(by_length)).run()
    c = result.counters
    assert c["migrations"] > 0 and c["island_resets"] > 0
    assert len(result.islands) == 3 and all(len(i) <= 6 for i in result.islands)
    cells = [tuple(a["cell"]) for a in result.archive]
    assert len(cells) == len(set(cells)) >= 2
    for a in result.archive:  # each elite is in its cell and is the fittest seen there
        cand = a["candidate"]
        assert cell(cand.program) == tuple(a["cell"])
    fitnesses = [a["candidate"].fitness for a in result.archive]
    assert fitnesses == sorted(fitnesses, reverse=True)


def test_cells():
    adamw = Program.parse("def p(g, m, v, lr):\n    m = interp(m, g, 0.1)\n"
                          "    v = interp(v, g * g, 0.001)\n    return lr * m / sqrt(v), m, v\n")
    lion = Program.parse("def p(g, m, lr):\n    m = interp(m, g, 0.1)\n"
                         "    return lr * sign(m), m\n")
    assert cell(adamw) == (2, False, True)
    assert cell(lion) == (1, True, False)
    assert cell(Program.parse("def p(g, lr):\n    return lr * g\n")) == (0, False, False)
