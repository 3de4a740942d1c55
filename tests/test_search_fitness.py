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
    lr_width,
    per_rate,
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


# ------------------------------------------------------------ several task seeds


def test_one_rate_for_all_seeds_by_the_geometric_mean():
    """Rate-major replicas; per seed the best rates differ (rate 2 for seed 0, rate 1 for
    seed 1), but a rate must hold on both seeds: rate 0 wins with sqrt(1 * 4) = 2."""
    inf = math.inf
    rates = per_rate([1.0, 4.0, 3.0, 3.0, 0.5, inf], 2)
    assert rates == [pytest.approx(2.0, rel=1e-15), pytest.approx(3.0, rel=1e-15), inf]
    assert min(range(3), key=rates.__getitem__) == 0


@pytest.mark.parametrize("losses,width", [
    ([5.0, 1.05, 1.0, 1.08, 2.0, 1.01], 2.0),  # rates 1..3 within 10%; rate 5 not contiguous
    ([math.inf, 1.0, math.inf, 1.0, 1.0, 1.0], 0.0),
    ([1.0, 1.0, 1.0, 1.0, 1.0, 1.0], 5.0),
    ([math.inf] * 6, 0.0),
])
def test_lr_width_is_the_contiguous_range_within_ten_percent(losses, width):
    grid = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]
    assert lr_width(losses, grid) == pytest.approx(width, abs=1e-12)


def test_two_task_seeds_score_both_seeds_at_one_rate():
    """Fails if the fitness can fit one seed's noise: the candidate's and the baseline's loss
    must be the best rate's geometric mean over both seeds, each seed trained on its own."""
    grid = LR_GRID[2:6]
    fit2 = TrainerFitness(STAGE, grid, zoo.load("adamw"), grid, (), task_seeds=(0, 1))
    e = fit2.evaluate(SGD, "s")

    def alone(program):
        per_seed = [train("quadratic", program, "tiny", seeds=[s] * len(grid),
                          hparams={"lr": list(grid)}, steps=STEPS,
                          eval_every=STEPS // 20).final_loss.tolist() for s in (0, 1)]
        geo = [math.sqrt(a * b) for a, b in zip(*per_seed, strict=True)]
        return per_seed, geo

    per_seed, geo = alone(SGD)
    assert per_seed[0] != per_seed[1]  # the seeds are different problems
    k = min(range(len(grid)), key=geo.__getitem__)
    assert e.best_lr["quadratic"] == grid[k]
    assert e.losses["quadratic"] == pytest.approx(geo[k], rel=1e-5)
    assert e.losses["quadratic"] != pytest.approx(min(per_seed[0]), rel=1e-3)
    _, base_geo = alone(zoo.load("adamw"))
    assert fit2.baseline("s", "quadratic").final == pytest.approx(min(base_geo), rel=1e-5)
    assert e.fitness == pytest.approx(math.log(min(base_geo) / geo[k]), rel=1e-4)
    assert e.cost == STEPS * len(grid) * 2
    assert e.lr_width["quadratic"] == pytest.approx(lr_width(geo, grid), abs=1e-9)


@pytest.mark.parametrize("setting,steps,compiles", [
    ("false", 10**6, False), (False, 10**6, False), ("true", 1, True), (True, 1, True),
    ("auto", 7 * 150, False),  # the short transfer config's evolution tier: eager
    ("auto", 7 * 400, True),   # the overnight config's: compiled
    ("auto", 1599, False), ("auto", 1600, True),  # 2 x 0.4 s of gcc / 0.5 ms saved per step
])
def test_compile_where_the_build_amortises(setting, steps, compiles):
    from optforge.train import amortise

    assert amortise.compiles(setting, steps) is compiles
    with pytest.raises(ValueError, match="compile must be"):
        amortise.mode("sometimes")


def test_the_compiled_stage_scores_as_the_eager_one_up_to_rounding():
    """compile=True on a stage (candidate and baseline): the fitness equals the eager one up
    to float rounding; a program with matrix ops runs eagerly, bit for bit, and silently."""
    import warnings

    grid = [1e-3, 1e-2, 1e-1]
    eager, comp = (TrainerFitness(STAGE, grid, zoo.load("adamw"), grid, (), compile=c)
                   for c in (False, "true"))
    assert (eager.compiles(STAGE["s"]), comp.compiles(STAGE["s"])) == (False, True)
    for name in ("lion", "nadam"):
        a, b = (f.evaluate(zoo.load(name), "s") for f in (eager, comp))
        assert b.fitness == pytest.approx(a.fitness, rel=1e-4, abs=1e-4)
        assert b.losses["quadratic"] == pytest.approx(a.losses["quadratic"], rel=1e-4)
        assert b.best_lr == a.best_lr
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "runs eagerly" warning per candidate
        a, b = (f.evaluate(zoo.load("adafactor"), "s") for f in (eager, comp))
    assert a.error is None and a.losses and b.losses == a.losses


# the tiny tier's AdamW recipe rates (src/optforge/tasks/quadratic.py, digits.py)
RECIPE = {"quadratic": 1.0, "digits_mlp": 1e-2}
RELATIVE = (0.1, 1.0, 10.0)
BY_HAND = {"quadratic": (0.1, 1.0, 10.0), "digits_mlp": (1e-3, 1e-2, 1e-1)}  # RECIPE x RELATIVE


@pytest.fixture(scope="module")
def relative():
    """One evaluation of SGD with a relative grid on two tasks whose recipes differ by two
    decades, and the same tasks evaluated one by one on the hand-scaled absolute grids."""
    def fitness(grid, tasks, rel):
        stage = {"s": Stage.parse("s", f"tiny:{','.join(tasks)}@30")}
        return TrainerFitness(stage, grid, zoo.load("adamw"), grid, relative=rel)

    rel = fitness(RELATIVE, list(RECIPE), True)
    absolute = {t: fitness(BY_HAND[t], [t], False) for t in RECIPE}
    return rel, rel.evaluate(SGD, "s"), absolute, {t: f.evaluate(SGD, "s")
                                                   for t, f in absolute.items()}


@pytest.mark.parametrize("task", list(RECIPE))
def test_a_relative_grid_trains_on_recipe_times_grid(relative, task):
    """lr_grid_relative: a task's rates are its recipe rate x the grid; recorded rates are
    absolute (best_lr, the baseline's lr), scores and widths those of the hand-scaled grid."""
    from optforge import tasks

    rel, e, absolute, by_hand = relative
    assert tasks.get(task).spec("tiny").adamw["lr"] == RECIPE[task]
    assert rel.rates(rel.stages["s"], task, RELATIVE) == pytest.approx(BY_HAND[task], rel=1e-15)
    assert e.complete and by_hand[task].complete
    assert e.best_lr[task] == pytest.approx(by_hand[task].best_lr[task], rel=1e-15)
    assert e.losses[task] == pytest.approx(by_hand[task].losses[task], rel=1e-9)
    assert e.scores[task] == pytest.approx(by_hand[task].scores[task], abs=1e-9)
    assert e.lr_width[task] == pytest.approx(by_hand[task].lr_width[task], abs=1e-12)
    assert rel.baseline("s", task).lr == pytest.approx(absolute[task].baseline("s", task).lr,
                                                       rel=1e-15)
