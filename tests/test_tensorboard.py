"""``--tensorboard DIR`` of ``optforge search`` and ``optforge bench``: the event files, read
back with TensorBoard's own reader, hold what the runs' result.json files say."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from optforge.cli import app

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)


def scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_bench_logs_trials_curves_and_results(tmp_path):
    out, tb = tmp_path / "bench", tmp_path / "tb"
    res = CliRunner().invoke(app, [
        "bench", "--optimizers", "adamw,lion", "--tasks", "quadratic", "--trials", "2",
        "--seeds", "2", "--steps", "30", "--evals", "3", "--batch", "2", "--no-plots",
        "--out", str(out), "--tensorboard", str(tb)])
    assert res.exit_code == 0, res.output
    got = scalars(tb)
    data = json.loads((out / "results.json").read_text())
    for e in data["entries"]:
        o = e["optimizer"]
        assert got[f"quadratic/final_metric/{o}"] == [
            (0, pytest.approx(e["final_metric"]["mean"], rel=1e-6))]
        trials = [(t["number"], t["value"]) for t in e["tuning"]["trials"]
                  if t["value"] is not None and math.isfinite(t["value"])]
        assert got[f"quadratic/tuning/{o}"] == [(n, pytest.approx(v, rel=1e-6))
                                                for n, v in trials]
        curve = [sum(c[i] for c in e["loss_curves"]) / len(e["loss_curves"])
                 for i in range(len(e["eval_steps"]))]
        assert [s for s, _ in got[f"quadratic/curves/{o}"]] == e["eval_steps"]
        assert [v for _, v in got[f"quadratic/curves/{o}"]] == pytest.approx(curve, rel=1e-6)
        assert got[f"profile/{o}"] == [(0, pytest.approx(data["scores"][o], rel=1e-6))]
    progress = [v for _, v in got["bench/progress"]]
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)


def test_search_logs_fitness_cache_stages_and_curves(tmp_path):
    out, tb = tmp_path / "run", tmp_path / "tb"
    res = CliRunner().invoke(app, [
        "search", "--backend", "inline", "--seed", "1", "--init", "adamw", "--init", "lion",
        "--evaluations", "6", "--population", "4", "--tournament", "2",
        "--tiers", "tiny:quadratic@30", "--tiers", "tiny:digits_logreg@30",
        "--heldout", "tiny:digits_mlp@30", "--promote-threshold", "-10", "--promote-max", "2",
        "--simplify-top", "1", "--simplify-evaluations", "2", "--out", str(out),
        "--tensorboard", str(tb)])
    assert res.exit_code == 0, res.output
    got = scalars(tb)
    result = json.loads((out / "result.json").read_text())
    best = result["hall_of_fame"][0]
    assert got["search/best_fitness"][-1][1] == pytest.approx(best["fitness"], rel=1e-6)
    counters = result["counters"]
    for key in ("evaluated", "structural", "behavioural", "skip_rate"):
        assert got[f"cache/{key}"][-1][1] == pytest.approx(counters[key], rel=1e-6)
    assert {k.removeprefix("cache/filtered_by/"): v[-1][1] for k, v in got.items()
            if k.startswith("cache/filtered_by/")} == counters["filtered_by"]
    assert [v for _, v in got["hall_of_fame/fitness"]] == pytest.approx(
        [c["fitness"] for c in result["hall_of_fame"]], rel=1e-6)
    assert {int(v) for _, v in got["search/phase"]} >= {0, 1}  # evolution, then the funnel
    assert "funnel/tier1" in got and "winners/1/heldout" in got
    curves = best["evaluation"]["curves"]["quadratic"]
    assert [s for s, _ in got["curves/quadratic/best"]] == curves["steps"]
    assert [v for _, v in got["curves/quadratic/best"]] == pytest.approx(curves["loss"],
                                                                        rel=1e-6)
    assert [v for _, v in got["curves/quadratic/baseline"]] == pytest.approx(
        curves["baseline"], rel=1e-6)


def test_a_bad_run_with_tensorboard_is_a_clean_error(tmp_path):
    res = CliRunner().invoke(app, ["bench", "--resume", str(tmp_path / "nothing"),
                                   "--tensorboard", str(tmp_path / "tb")])
    assert res.exit_code == 2 and "Traceback" not in res.output
