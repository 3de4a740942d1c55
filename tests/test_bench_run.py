"""A small benchmark end to end: table, JSON, CSV, plots, failures, and the CLI."""

import csv
import json
import math

import numpy as np
import pytest
import typer
from scipy import stats as sps
from typer.testing import CliRunner

from optforge.bench import backend, stats
from optforge.bench.config import BenchConfig
from optforge.bench.report import render
from optforge.bench.run import run_bench
from optforge.cli.bench import bench_command

BROKEN = "def blowup(w, g, lr):\n    update = g * 1e30\n    return update\n"
SMALL = {"trials": 3, "seeds": 3, "steps": 60, "evals": 6, "batch": 3}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    broken = tmp / "blowup.py"
    broken.write_text(BROKEN)
    out = tmp / "out"
    result = run_bench(BenchConfig(["lion", "adamw", str(broken)], ["quadratic"], **SMALL),
                       out_dir=out)
    return result, out


def test_files_are_written(bench):
    result, out = bench
    names = {"results.json", "results.csv", "results.txt", "curves_quadratic.png", "profile.png"}
    assert names <= {p.name for p in out.iterdir()}
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    data = json.loads((out / "results.json").read_text())
    assert [e["optimizer"] for e in data["entries"]] == ["adamw", "lion", "blowup"]
    assert data["settings"]["trials"] == 3 and data["settings"]["final_seeds"] == [0, 1, 2]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["optimizer"], r["status"]) for r in rows] == [
        ("adamw", "ok"), ("lion", "ok"), ("blowup", "failed")]
    table = (out / "results.txt").read_text()
    assert table == render(result)
    for word in ("adamw", "lion", "blowup", "FAILED", "performance profile"):
        assert word in table


def test_broken_program_is_a_failed_row(bench):
    result, _ = bench
    e = result.entry("blowup", "quadratic")
    assert e.status == "failed" and e.reason == "diverged in all 3 tuning trials"
    assert e.final_metric is None and e.steps_to_target == math.inf
    assert result.scores["blowup"] == 0.0


def test_equal_budgets_and_disjoint_seeds(bench):
    result, _ = bench
    for e in result.entries:
        assert len(e.tuning.trials) == 3
        assert e.tuning.seed not in result.settings["final_seeds"]
    for name in ("adamw", "lion"):
        assert result.entry(name, "quadratic").seeds == [0, 1, 2]


def test_statistics_agree_with_scipy(bench):
    result, _ = bench
    base, lion = result.entry("adamw", "quadratic"), result.entry("lion", "quadratic")
    finals = {e.optimizer: np.array([c[-1] for c in e.metric_curves]) for e in (base, lion)}
    for e in (base, lion):
        x = finals[e.optimizer]
        low, high = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
        assert e.final_metric.mean == pytest.approx(x.mean(), rel=1e-12)
        assert (e.final_metric.low, e.final_metric.high) == pytest.approx((low, high), rel=1e-9)
    ref = sps.ttest_ind(finals["lion"], finals["adamw"], equal_var=False)
    assert lion.ttest.pvalue == pytest.approx(ref.pvalue, rel=1e-9)
    assert base.ttest is None and base.ttest_loss is None and base.verdict is None
    losses = {e.optimizer: np.array([c[-1] for c in e.loss_curves]) for e in (base, lion)}
    ref = sps.ttest_ind(losses["lion"], losses["adamw"], equal_var=False)
    assert lion.ttest_loss.pvalue == pytest.approx(ref.pvalue, rel=1e-9)
    # one comparison in the table: Holm leaves it; the loss test decides
    assert lion.p_holm == pytest.approx({"loss": lion.ttest_loss.pvalue,
                                         "metric": lion.ttest.pvalue})
    clipped = lion.tuning.clipped or base.tuning.clipped
    want = ("clipped" if clipped else "no difference" if ref.pvalue >= 0.05
            else "better" if losses["lion"].mean() < losses["adamw"].mean() else "worse")
    assert lion.verdict == want


def test_targets_speedups_and_profile(bench):
    result, _ = bench
    info = result.tasks["quadratic"]
    base = result.entry("adamw", "quadratic")
    assert info["target"] == pytest.approx(base.final_loss.mean, rel=1e-12)
    # the baseline's seed-mean curve ends at its own target
    assert base.steps_to_target <= 60
    assert base.speedup.value == 1.0
    fit = info["baseline_fit"]
    assert fit.budgets == [8, 15, 30, 60, 120] and fit.fit is not None
    assert fit.losses[3] == base.final_loss.mean
    lion = result.entry("lion", "quadratic")
    want = stats.data_equivalent_speedup(stats.PowerLaw(**fit.fit), lion.final_loss.mean, 60, 2.0,
                                         (fit.budgets, fit.losses))
    assert lion.speedup == want
    times = {e.optimizer: {"quadratic": e.steps_to_target} for e in result.entries}
    assert result.scores == pytest.approx(stats.profile_scores(times, 4.0))


def test_error_in_one_optimizer_does_not_stop_the_run(tmp_path, monkeypatch):
    real = backend.train_replicas

    def flaky(spec, program, *args, **kw):
        if program.name == "lion":
            raise RuntimeError("device lost")
        return real(spec, program, *args, **kw)

    monkeypatch.setattr(backend, "train_replicas", flaky)
    small = {**SMALL, "trials": 2, "steps": 30}
    result = run_bench(BenchConfig(["adamw", "lion"], ["quadratic"], **small), plots=False)
    e = result.entry("lion", "quadratic")
    assert e.status == "failed" and e.reason == "RuntimeError: device lost"
    assert result.entry("adamw", "quadratic").status == "ok"


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"optimizers": ["adamz"], "tasks": ["quadratic"]}, "no zoo optimizer"),
        ({"optimizers": "lion, adamz", "tasks": "quadratic"}, "no zoo optimizer 'adamz'"),
        ({"optimizers": ["lion"], "tasks": ["imagenet"]}, "no task"),
        ({"optimizers": ["lion"], "tasks": []}, "at least one task"),
        ({"optimizers": ["lion"], "tasks": ["quadratic"], "seeds": 0}, "seeds"),
        ({"optimizers": ["lion"], "tasks": ["quadratic"], "sampler": "cmaes"}, "sampler"),
        ({"optimizers": ["lion"], "tasks": ["quadratic"], "schedule": "step"}, "schedule"),
        ({"optimizers": ["lion"], "tasks": ["quadratic"], "tier": "huge"}, "no tier"),
    ],
)
def test_bad_input(kw, match):
    with pytest.raises((KeyError, ValueError), match=match):
        run_bench(BenchConfig(**kw))


def test_cli(tmp_path):
    app = typer.Typer()
    app.command("bench")(bench_command)
    app.command("other")(lambda: None)  # a multi-command app, as optforge's
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(app, ["bench", "--optimizers", "adamw,lion", "--tasks", "quadratic",
                              "--trials", "2", "--seeds", "2", "--steps", "30", "--evals", "3",
                              "--no-plots", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "adamw" in res.output and "performance profile" in res.output
    # not a terminal: the table keeps every column, progress comes as plain lines
    for column in ("final metric", "val loss", "speedup", "p loss", "p metric", "verdict",
                   "ok/pr/div", "widened", "status"):
        assert column in res.output, column
    assert "[bench] quadratic: lion" in res.output and "plan: " in res.output
    assert (out / "results.json").is_file() and not list(out.glob("*.png"))
    bad = runner.invoke(app, ["bench", "--optimizers", "adamz", "--tasks", "quadratic"])
    assert bad.exit_code == 2 and "no zoo optimizer 'adamz'" in bad.output


def test_optforge_has_the_bench_command():
    from optforge.bench import config, tune
    from optforge.cli import app
    from optforge.cli import bench as cli
    from optforge.train import SCHEDULES

    assert (cli.SAMPLERS, cli.PRUNERS, cli.MAX_ROUNDS) == (tune.SAMPLERS, tune.PRUNERS,
                                                           tune.MAX_ROUNDS)
    assert config.SCHEDULES == SCHEDULES
    res = CliRunner().invoke(app, ["bench", "--help"])
    assert res.exit_code == 0 and "--optimizers" in res.output and "--trials" in res.output


def test_the_compile_setting_reaches_every_run_and_changes_only_rounding(monkeypatch):
    """compile = true trains every run with the C step, "auto" by the amortisation rule
    (an optimizer's trials + seeds runs of T steps on a task), and the compiled bench's
    tuned losses equal the eager bench's up to rounding."""
    from optforge.train.amortise import MIN_STEPS, compiles

    specs = []
    real = backend.train_replicas

    def spy(spec, *args, **kw):
        specs.append(spec)
        return real(spec, *args, **kw)

    monkeypatch.setattr(backend, "train_replicas", spy)
    small = {**SMALL, "trials": 2, "seeds": 2, "steps": 30}
    runs = {}
    for mode in ("true", "false", "auto"):
        specs.clear()
        runs[mode] = run_bench(BenchConfig(["adamw"], ["quadratic"], **small, compile=mode),
                               plots=False)
        want = compiles(mode, 30 * (2 + 2))
        assert specs and {s.compile for s in specs} == {want}
    assert not compiles("auto", 30 * 4) and compiles("auto", MIN_STEPS)
    a, b = (runs[m].entry("adamw", "quadratic") for m in ("true", "false"))
    assert a.config == b.config  # the same trials chose the same hyperparameters
    assert np.allclose(a.loss_curves, b.loss_curves, rtol=1e-4, atol=1e-6)


def test_a_bench_run_stored_before_the_compile_setting_resumes_eagerly(tmp_path):
    from optforge.bench.stored import create_run, resume_bench
    from optforge.store import RunStore

    cfg = BenchConfig(["adamw"], ["quadratic"], **{**SMALL, "trials": 2, "seeds": 2,
                                                   "steps": 20}, compile="false")
    with create_run(tmp_path / "new", cfg) as store:
        old = {k: v for k, v in store.config.items() if k != "compile"}
        meta = {k: store.meta(k) for k in ("candidates", "planned", "planned_base")}
    from optforge.store.bench import KIND, SCHEMA

    RunStore.create(tmp_path / "old", KIND, old, schema=SCHEMA, **meta).close()
    result = resume_bench(tmp_path / "old", plots=False)
    assert result.entry("adamw", "quadratic").status == "ok"
    assert BenchConfig.stored(old).compile == "false"
    assert BenchConfig.stored(cfg.as_dict()) == cfg
    with pytest.raises(ValueError, match="compile must be"):
        BenchConfig(["adamw"], ["quadratic"], compile="sometimes")
