"""Simplification: dead code, greedy removal, constant rounding, each within a tolerance."""

from __future__ import annotations

import pytest

from optforge.lang.ir import Program, names_read
from optforge.search.fitness import TargetFitness
from optforge.search.simplify import formula, round_sig, roundings, simplify

MOMENTUM = """def momentum(g, m, lr):
    m = interp(m, g, 1 - {beta})
    return lr * m, m
"""


def target(beta: float = 0.9) -> TargetFitness:
    return TargetFitness(Program.parse(MOMENTUM.format(beta=beta)))


def score(fit: TargetFitness):
    return lambda p: fit.evaluate(p).fitness


def test_a_useless_statement_goes_and_a_useful_one_stays():
    fit = target()
    p = Program.parse("""def f(g, m, lr):
    m = interp(m, g, 1 - 0.9)
    u = m * 1
    return lr * u, m
""")
    assert fit.evaluate(p).fitness == 0.0  # behaves exactly like the target
    s = simplify(p, score(fit), tolerance=0.0)
    assert [st.target for st in s.program.body] == ["m"]
    assert s.program.hash == fit.target.hash and s.fitness == 0.0
    # the target itself has nothing to lose: removing the moment costs fitness
    same = simplify(fit.target, score(fit), tolerance=1e-6)
    assert same.program.hash == fit.target.hash and same.edits == []


@pytest.mark.parametrize("as_hyper", [False, True])
def test_constants_are_rounded_when_fitness_allows(as_hyper):
    text = MOMENTUM.format(beta=0.8993)
    if as_hyper:
        text = text.replace("m, lr)", "m, lr, beta=0.8993)").replace("1 - 0.8993", "1 - beta")
    p = Program.parse(text)
    fit = target(0.8993)  # the unrounded program is the optimum

    def cost(beta):
        return -fit.evaluate(Program.parse(MOMENTUM.format(beta=beta))).fitness

    assert 0 < cost(0.899) < cost(0.9) < 1e-3

    def constant(tolerance):
        s = simplify(p, score(fit), tolerance=tolerance)
        assert s.fitness >= s.reference - tolerance
        return s.program.hyperparameters.get("beta") if as_hyper else \
            s.program.body[0].expr.args[2].args[1].value

    assert constant(0.0) == 0.8993  # any rounding costs fitness
    assert constant(cost(0.899) * 1.01) == 0.899  # 0.9 would cost more than allowed
    assert constant(cost(0.9) * 1.01) == 0.9


def test_dead_code_is_removed_and_a_pruned_epsilon_kept_out():
    fit = TargetFitness(Program.parse("""def t(g, v, lr):
    v = interp(v, g * g, 0.01)
    return lr * g / sqrt(v + 1), v
"""))
    p = Program.parse("""def f(w, g, v, d, lr, eps=1e-12):
    v = interp(v, g * g, 0.01)
    d = d + sign(w)
    junk = exp(w)
    return lr * g / (sqrt(v + 1) + eps), v, d
""")
    s = simplify(p, score(fit), tolerance=1e-12)
    assert s.edits[0] == "removed dead code"
    assert "eps" not in str(s.program) and "junk" not in str(s.program)
    assert s.program.slots == ("v",) and s.program.hash == fit.target.hash


def test_evaluations_are_cached_and_capped():
    fit = target()
    p = Program.parse("""def f(g, m, lr):
    m = interp(m, g, 1 - 0.9)
    a = m * 1
    b = a * 1
    c = b * 1
    return lr * c, m
""")
    s = simplify(p, score(fit), tolerance=0.0, max_evaluations=3)
    assert s.evaluations <= 3 and fit.calls <= 4  # + the fixture's own target run
    full = simplify(p, score(target()), tolerance=0.0)
    assert len(full.program.body) == 1


def test_edits_must_stay_valid():
    p = Program.parse("def f(g, m, lr):\n    m = interp(m, g, 1 - 0.9)\n    return lr * m, m\n")
    free = simplify(p, lambda q: 0.0, tolerance=1.0)  # every edit is as good as any other
    assert "lr" not in names_read(free.program.returns[0])
    keep = simplify(p, lambda q: 0.0, tolerance=1.0,
                    valid=lambda q: "lr" in names_read(q.returns[0]))
    assert "lr" in names_read(keep.program.returns[0])


def test_rounding_helpers():
    assert round_sig(0.8993, 1) == 0.9 and round_sig(0.0012345, 2) == 0.0012
    assert roundings(0.8993) == [0.9, 0.899]
    assert roundings(0.9) == []
    assert roundings(0.99871) == [1.0, 0.999]


def test_formula_of_a_winner():
    text, tex = formula(Program.parse(MOMENTUM.format(beta=0.9)))
    assert "m_{t}" in text and "lr" in text
    assert tex and "\\" in tex
