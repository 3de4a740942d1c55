"""The training-based fitness, on the real trainer: definition, divergence, hurdles, baseline."""

from __future__ import annotations

import math

import pytest

from optforge import zoo
from optforge.lang.ir import Program
from optforge.search.config import BASELINE_LR_GRID, LR_GRID
from optforge.search.fitness import (
    WORST,
    FunctionFitness,
    Stage,
    TrainerFitness,
    aggregate,
    score,
)
from optforge.search.hurdles import Hurdles
from optforge.train import train

STEPS = 40
STAGE = {"s": Stage.parse("s", f"tiny:quadratic@{STEPS}")}
SGD = Program.parse("def sgd(g, lr):\n    return lr * g\n")
ASCENT = Program.parse("def ascent(g, lr):\n    return neg(1000000 * lr * g)\n")


def make(lr_grid=LR_GRID, checkpoints=(0.25, 0.5)) -> TrainerFitness:
    return TrainerFitness(STAGE, lr_grid, zoo.load("adamw"), BASELINE_LR_GRID, checkpoints)


@pytest.fixture(scope="module")
def fit() -> TrainerFitness:
    return make()


def best_final(program, lrs):
    r = train("quadratic", program, "tiny", seeds=[0] * len(lrs), hparams={"lr": list(lrs)},
              steps=STEPS, eval_every=STEPS // 20)
    finite = [x for x in r.final_loss.tolist() if math.isfinite(x)]
    return min(finite)


def test_fitness_is_the_log_ratio_to_the_tuned_baseline(fit):
    e = fit.evaluate(SGD, "s")
    base = best_final(zoo.load("adamw"), BASELINE_LR_GRID)
    mine = best_final(SGD, LR_GRID)
    assert e.complete and not e.diverged and e.error is None
    assert e.losses["quadratic"] == mine
    assert e.fitness == e.scores["quadratic"] == pytest.approx(math.log(base / mine), rel=1e-12)
    assert fit.baseline("s", "quadratic").final == base
    assert e.cost == STEPS * len(LR_GRID)


def test_the_baseline_scores_zero_on_its_own_grid_and_at_most_zero_on_a_subset(fit):
    same = make(lr_grid=BASELINE_LR_GRID, checkpoints=())
    assert same.evaluate(zoo.load("adamw"), "s").fitness == 0.0
    assert fit.evaluate(zoo.load("adamw"), "s").fitness <= 0.0


def test_divergence_gives_the_worst_fitness(fit):
    e = fit.evaluate(ASCENT, "s")
    assert e.fitness == WORST and e.diverged and not e.scores["quadratic"] > WORST


def test_a_candidate_trailing_the_hurdle_stops_early(fit):
    full = fit.evaluate(SGD, "s", {"quadratic@0.25": -math.inf, "quadratic@0.5": -math.inf})
    assert full.complete and full.cost == STEPS * len(LR_GRID)
    at_quarter = fit.evaluate(SGD, "s", {"quadratic@0.25": math.inf})
    assert not at_quarter.complete and at_quarter.stopped == "quadratic@0.25"
    assert at_quarter.cost == STEPS // 4 * len(LR_GRID)
    # the stopped candidate is scored where it stopped, the same score a full run sees there
    assert at_quarter.fitness == at_quarter.checkpoints["quadratic@0.25"]
    assert at_quarter.fitness == full.checkpoints["quadratic@0.25"]
    at_half = fit.evaluate(SGD, "s", {"quadratic@0.25": -math.inf, "quadratic@0.5": math.inf})
    assert at_half.stopped == "quadratic@0.5" and at_half.cost == STEPS // 2 * len(LR_GRID)


def test_hurdles_from_the_running_percentile_stop_a_weaker_candidate(fit):
    hurdles = Hurdles(percentile=50, warmup=1)
    strong = fit.evaluate(zoo.load("adamw"), "s")
    hurdles.record(strong.checkpoints)
    weak = fit.evaluate(SGD, "s", hurdles.thresholds())
    assert strong.checkpoints["quadratic@0.25"] > weak.checkpoints["quadratic@0.25"]
    assert not weak.complete and weak.stopped == "quadratic@0.25"
    again = fit.evaluate(zoo.load("adamw"), "s", hurdles.thresholds())
    assert again.complete and again.fitness == strong.fitness


def test_the_baseline_is_trained_once_per_task_and_budget(monkeypatch):
    f = make()
    calls = []
    real = f._train

    def counting(task, stage, program, lrs, steps, on_eval=None):
        calls.append(program.name)
        return real(task, stage, program, lrs, steps, on_eval)

    monkeypatch.setattr(f, "_train", counting)
    f.evaluate(SGD, "s")
    f.evaluate(SGD, "s")
    assert calls.count("adamw") == 1 and calls.count("sgd") == 2


def test_fitness_arguments_are_checked():
    with pytest.raises(ValueError, match="lr_grid"):
        make(lr_grid=[0.1, -1.0])
    with pytest.raises(ValueError, match="fractions"):
        make(checkpoints=(0.5, 1.0))
    with pytest.raises(KeyError, match="no stage"):
        make().evaluate(SGD, "nope")


def test_score_and_aggregate():
    assert score(2.0, 1.0) == pytest.approx(math.log(2))
    assert score(1.0, math.nan) == WORST and score(1.0, math.inf) == WORST
    assert score(1.0, 0.0) == pytest.approx(math.log(1e30))
    assert aggregate([0.1, 0.3]) == pytest.approx(0.2)
    assert aggregate([0.1, 0.3], "min") == 0.1
    assert aggregate([0.1, WORST]) == WORST
    with pytest.raises(ValueError):
        aggregate([0.1], "median")
    assert FunctionFitness(lambda p, s: math.nan).evaluate(SGD, "s").fitness == WORST
