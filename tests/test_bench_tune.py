"""Tuning: equal budgets, seeds, pruning and failures, against a scripted trainer.

The trainer is replaced by a fake whose validation loss is a known function
of the hyperparameters, so every decision of the tuner can be checked.
"""

import math

import numpy as np
import pytest

from optforge.bench import backend, tune
from optforge.bench.candidates import resolve
from optforge.bench.space import center
from optforge.train import TrainResult


def fake_result(configs, seeds, steps, evals, curve, status=None, error=None):
    """A TrainResult whose replica k has validation loss ``curve(configs[k], step)``."""
    k = len(seeds)
    every = backend.eval_every(steps, evals)
    at = sorted({0, steps, *range(every, steps + 1, every)})
    loss = np.array([[curve(c, s) for c in configs] for s in at], dtype=float)
    status = status or ["ok" if np.all(np.isfinite(loss[:, j])) else "diverged"
                        for j in range(k)]
    return TrainResult(
        task="fake", tier="tiny", program="p", metric="loss", higher_is_better=False,
        seeds=list(seeds), hparams={}, steps=steps, schedule="cosine",
        train_loss=np.full((steps, k), np.nan), eval_steps=np.array(at), eval_loss=loss,
        eval_metric=loss.copy(), status=status,
        diverged_step=[None if s == "ok" else at[-1] for s in status],
        reason=[None if s == "ok" else "loss is nan" for s in status], wall_time=0.0,
        error=error)


def stop_early(result, on_eval):
    """What the real trainer does with ``on_eval``: call it at each evaluation and end
    the curves where it returns True; the step it stopped at, or None."""
    for i, step in enumerate(result.eval_steps):
        if on_eval(int(step), result.eval_loss[i]):
            n = i + 1
            result.eval_steps, result.eval_loss = result.eval_steps[:n], result.eval_loss[:n]
            result.eval_metric = result.eval_metric[:n]
            result.stopped_at = int(step)
            return int(step)
    return None


class FakeTrain:
    """Stands in for ``optforge.train.train``; records every call."""

    def __init__(self, curve, error=None):
        self.curve, self.error, self.calls = curve, error, []

    def __call__(self, task, program, *, tier, seeds, hparams, steps, eval_every, on_eval=None,
                 **kw):
        names = list(hparams)
        configs = [{n: hparams[n][k] for n in names} for k in range(len(seeds))]
        self.calls.append({"seeds": list(seeds), "configs": configs, "steps": steps})
        result = fake_result(configs, seeds, steps, max(1, steps // eval_every), self.curve,
                             status=["error"] * len(seeds) if self.error else None,
                             error=self.error)
        if on_eval is not None and self.error is None:
            stop_early(result, on_eval)
        return result


def bowl(config, step):
    """Loss decays with steps toward a floor set by the distance of log(lr) from log(3e-3)."""
    floor = 0.1 + (math.log10(config["lr"]) - math.log10(3e-3)) ** 2
    return floor + 1.0 / (1 + step)


@pytest.fixture
def adamw():
    return resolve("adamw")


def run(monkeypatch, fake, cand, **kw):
    """Tune with the fake trainer; no widening rounds unless ``adapt=True`` (the bowl ignores
    every hyperparameter but lr, so any of them may end at an edge by chance)."""
    monkeypatch.setattr(backend, "train", fake)
    args = {"trials": 12, "batch": 4, "adapt": False, **kw}
    return tune.tune(cand, backend.RunSpec("fake", "tiny", 90, 9), **args)


@pytest.mark.parametrize("sampler", tune.SAMPLERS)
@pytest.mark.parametrize("pruner", tune.PRUNERS)
def test_equal_budget_seeds_and_best(monkeypatch, adamw, sampler, pruner):
    fake = FakeTrain(bowl)
    out = run(monkeypatch, fake, adamw, sampler=sampler, pruner=pruner)
    assert len(out.trials) == 12 and [t.number for t in out.trials] == list(range(12))
    assert len(fake.calls) == 3  # 12 trials in batches of 4
    assert all(c["seeds"] == [tune.TUNE_SEED] * 4 for c in fake.calls)
    # the first trial is the program's defaults (lr at the middle of its range)
    assert out.trials[0].params == pytest.approx(center(adamw.space, adamw.program))
    for t in out.trials:
        for name, dim in adamw.space.items():
            assert dim.low <= t.params[name] <= dim.high
    complete = [t for t in out.trials if t.state == "complete"]
    assert out.best_value == min(t.value for t in complete)
    assert out.best_value == pytest.approx(bowl(out.best, 90))
    if pruner == "none":
        assert out.count("pruned") == 0
    assert out.failure is None


def test_pruned_trials_stop_at_a_rung_and_never_win(monkeypatch, adamw):
    out = run(monkeypatch, FakeTrain(bowl), adamw, pruner="sha", trials=24)
    pruned = [t for t in out.trials if t.state == "pruned"]
    assert pruned, "successive halving should prune some of 24 trials"
    assert all(t.last_step < 90 and t.value is None for t in pruned)
    # a pruned trial was worse at its rung than the trial that won
    best = min((t for t in out.trials if t.state == "complete"), key=lambda t: t.value)
    assert all(bowl(t.params, t.last_step) > bowl(best.params, t.last_step) for t in pruned)


def test_live_callback_stops_a_fully_pruned_batch(monkeypatch, adamw):
    """With a trainer that takes ``on_eval``, a batch whose trials are all pruned stops."""
    stops = []

    def live_train(task, program, *, tier, seeds, hparams, steps, eval_every, on_eval, **kw):
        names = list(hparams)
        configs = [{n: hparams[n][k] for n in names} for k in range(len(seeds))]
        full = fake_result(configs, seeds, steps, max(1, steps // eval_every), bowl)
        step = stop_early(full, on_eval)
        if step is not None:
            stops.append(step)
        return full

    out = run(monkeypatch, live_train, adamw, pruner="sha", trials=24, batch=1)
    assert stops and all(s < 90 for s in stops)
    assert len(stops) == out.count("pruned")


def test_diverging_candidate_fails_with_the_reason(monkeypatch, adamw):
    out = run(monkeypatch, FakeTrain(lambda c, s: math.nan if s > 0 else 1.0), adamw, trials=5)
    assert out.count("diverged") == 5 and all(t.value == math.inf for t in out.trials)
    assert out.best is None and out.failure == "diverged in all 5 tuning trials"


def test_partly_diverging_candidate_keeps_its_finite_best(monkeypatch, adamw):
    def curve(c, s):
        return math.nan if c["lr"] > 3e-3 and s > 0 else bowl(c, s)

    out = run(monkeypatch, FakeTrain(curve), adamw, trials=12, pruner="none")
    assert 0 < out.count("diverged") < 12
    assert out.best["lr"] <= 3e-3


def test_program_error_ends_tuning_with_the_message(monkeypatch, adamw):
    fake = FakeTrain(bowl, error="RuntimeError: shapes do not match")
    out = run(monkeypatch, fake, adamw, trials=12)
    assert len(fake.calls) == 1  # deterministic: no point in more batches
    assert out.failure == "RuntimeError: shapes do not match"
    assert {t.state for t in out.trials} == {"error"}


@pytest.mark.parametrize(("kw", "match"), [({"trials": 0}, "trials"), ({"batch": 0}, "batch"),
                                           ({"sampler": "grid"}, "unknown sampler"),
                                           ({"pruner": "median"}, "unknown pruner")])
def test_bad_arguments(monkeypatch, adamw, kw, match):
    with pytest.raises(ValueError, match=match):
        run(monkeypatch, FakeTrain(bowl), adamw, **kw)


# ------------------------------------------------------------------ ranges that adapt


def valley(best_lr):
    """Loss with its minimum at ``lr = best_lr``, blind to every other hyperparameter."""
    def curve(config, step):
        return 0.1 + (math.log10(config["lr"]) - math.log10(best_lr)) ** 2 + 1.0 / (1 + step)
    return curve


def lr_only(cand, low, high):
    from dataclasses import replace

    from optforge.bench.space import Dim

    return replace(cand, space={"lr": Dim("log", low, high)})


def test_a_range_clipping_the_best_widens_until_it_lies_inside(monkeypatch, adamw):
    # optimum 0.3, range [1e-4, 1e-2]: widened to 0.1, then to 1 (0.3 lies inside)
    fake = FakeTrain(valley(0.3))
    out = run(monkeypatch, fake, lr_only(adamw, 1e-4, 1e-2), trials=10, adapt=True)
    assert out.rounds == 2 and len(out.trials) == 10 + 2 * tune.round_trials(10)
    assert [(e.name, e.side, e.range, e.widened_to) for e in out.edges] == [
        ("lr", "high", [1e-4, 1e-2], [1e-4, pytest.approx(0.1)]),
        ("lr", "high", [1e-4, pytest.approx(0.1)], [1e-4, pytest.approx(1.0)])]
    assert out.space["lr"] == ["log", 1e-4, pytest.approx(1.0)] and not out.clipped
    for t in out.trials:  # each round samples its own (widened) range
        assert 1e-4 <= t.params["lr"] <= [1e-2, 0.1, 1.0][t.round] * (1 + 1e-12)
    # the first trial of each round probes the middle of the range's new part
    firsts = [next(t for t in out.trials if t.round == r) for r in (1, 2)]
    assert [t.params["lr"] for t in firsts] == pytest.approx([10 ** -1.5, 10 ** -0.5])
    assert [t.number for t in out.trials] == list(range(len(out.trials)))
    from optforge.bench.space import Dim

    assert Dim("log", 1e-4, 1.0).edge(out.best["lr"]) is None
    assert out.best_value == min(t.value for t in out.trials if t.state == "complete")


@pytest.mark.parametrize("adapt", [True, False])
def test_at_the_hard_limit_the_edge_is_named_clipped(monkeypatch, adamw, adapt):
    monkeypatch.setattr(tune, "MAX_ROUNDS", 0)  # no round left (adapt=True) or none asked
    out = run(monkeypatch, FakeTrain(valley(0.5)), lr_only(adamw, 1e-4, 1e-2), trials=10,
              adapt=adapt)
    assert out.rounds == 0 and len(out.trials) == 10
    assert [(e.name, e.side, e.widened_to) for e in out.edges] == [("lr", "high", None)]
    assert out.clipped == out.edges and "hard limit" in str(out.clipped[0])


def test_an_inside_best_spends_no_extra_round(monkeypatch, adamw):
    out = run(monkeypatch, FakeTrain(valley(1e-3)), lr_only(adamw, 1e-5, 1e-1), trials=8,
              adapt=True)
    assert out.rounds == 0 and out.edges == [] and len(out.trials) == 8


def test_an_edge_names_itself_with_the_digits_that_matter():
    e = tune.Edge("beta2", "high", 0.999, [0.9, 0.999], 0, [0.9, 0.9999])
    assert str(e) == "beta2=0.999 at the high edge of [0.9, 0.999] -> [0.9, 0.9999]"
    e = tune.Edge("lr", "high", 0.00841, [1e-5, 1e-2], 1)
    assert str(e) == "lr=0.00841 at the high edge of [1e-05, 0.01], hard limit"


@pytest.mark.parametrize(("edges", "rounds", "shown"), [
    ([], 0, "-"),
    ([("lr", "high", 0, True)], 1, "lr↑"),  # widened once, then inside
    ([("lr", "high", 0, True), ("lr", "high", 1, True)], 2, "lr↑↑"),
    ([("lr", "high", 0, True), ("lr", "high", 1, False)], 1, "lr↑ CLIPPED"),  # hard limit
    ([("beta2", "low", 0, False)], 0, "beta2 CLIPPED"),  # never widened: no arrow
    ([("lr", "low", 0, True), ("wd", "high", 0, True)], 1, "lr↓, wd↑"),
])
def test_the_table_marks_each_widening_and_what_stayed_clipped(edges, rounds, shown):
    from optforge.bench.report import fmt_edges
    from optforge.bench.results import Entry
    from optforge.bench.tune import Edge, Tuning

    tuning = Tuning("adamw", "quadratic", "tpe", "none", 0, rounds=rounds, edges=[
        Edge(name, side, 1.0, [0.1, 1.0], r, [0.1, 10.0] if widened else None)
        for name, side, r, widened in edges])
    assert fmt_edges(Entry("adamw", "quadratic", "ok", None, tuning)) == shown
