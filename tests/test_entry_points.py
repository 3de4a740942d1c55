"""The Python entry points the commands use: search runs (create, run, resume, save) and
BenchConfig (Python, TOML, flags over a TOML file)."""

from __future__ import annotations

import json
import tomllib

import pytest
from typer.testing import CliRunner

from optforge import zoo
from optforge.bench import BenchConfig
from optforge.lang.ir import Program
from optforge.search import Search, SearchConfig
from optforge.search.fitness import TargetFitness
from optforge.search.stored import create_run, open_run, resume_search, run_search
from optforge.store import RunStore, StoreError

SEARCH = SearchConfig(seed=2, evaluations=12, population=6, tournament=3, init=["sgd"],
                      tiers=["tiny:quadratic@20"], heldout="", promote_threshold=-50.0,
                      simplify_top=1, simplify_evaluations=4)


class Counting:
    """TargetFitness towards AdamW (no training), counting its evaluations."""

    def __init__(self):
        self.fitness, self.calls = TargetFitness(zoo.load("adamw")), 0

    def evaluate(self, program, stage, thresholds=None):
        self.calls += 1
        return self.fitness.evaluate(program, stage, thresholds)


def test_run_search_creates_runs_and_saves_and_resume_rereads(tmp_path):
    run_dir = tmp_path / "run"
    first = Counting()
    result = run_search(run_dir, SEARCH, fitness=first)
    assert first.calls > 0
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["counters"] == json.loads(result.to_json())["counters"]
    assert SearchConfig.from_toml(run_dir / "config.toml") == SEARCH
    for i, w in enumerate(result.winners, 1):
        assert Program.parse((run_dir / f"winner_{i}.py").read_text()) == w.simplified
    with RunStore.open(run_dir, readonly=True) as store:
        assert store.kind == "search" and store.config == SEARCH.as_dict()
    again = Counting()
    resumed = resume_search(run_dir, fitness=again)  # finished: everything is replayed
    assert again.calls == 0
    assert [(c.source, c.fitness) for c in resumed.hall_of_fame] == [
        (c.source, c.fitness) for c in result.hall_of_fame]


def test_search_runs_refuse_bad_input_and_create_nothing(tmp_path):
    bad = SearchConfig(init=[str(tmp_path / "missing.py")])
    with pytest.raises(ValueError, match="does not exist"):
        create_run(tmp_path / "a", bad)
    assert not (tmp_path / "a").exists()
    RunStore.create(tmp_path / "b", "bench", {}).close()
    with pytest.raises(StoreError, match="is a bench run, not a search run"):
        open_run(tmp_path / "b")


def test_save_writes_result_json_only_outside_a_run_directory(tmp_path):
    """Without a store ``save`` writes result.json; in a run directory the store's finish
    is its one writer and ``save`` leaves it as it is."""
    result = Search(SEARCH, fitness=Counting()).run()
    written = result.save(tmp_path / "plain")
    assert (tmp_path / "plain" / "result.json").read_text() == result.to_json()
    assert written[0] == tmp_path / "plain" / "result.json"
    run_dir = tmp_path / "run"
    run_search(run_dir, SEARCH, fitness=Counting())
    (run_dir / "result.json").write_text("as the store wrote it")
    assert run_dir / "result.json" in result.save(run_dir)
    assert (run_dir / "result.json").read_text() == "as the store wrote it"
    (run_dir / "result.json").unlink()  # a run store that never finished: no stale path listed
    assert run_dir / "result.json" not in result.save(run_dir)
    assert not (run_dir / "result.json").exists()


# ------------------------------------------------------------------ BenchConfig

OLD_STORED = {  # a bench run's stored config as written before BenchConfig
    "optimizers": ["adamw", "lion"], "tasks": ["quadratic"], "trials": 3, "seeds": 2,
    "tier": "tiny", "steps": 30, "evals": 4, "sampler": "tpe", "pruner": "sha", "batch": 3,
    "schedule": "cosine", "device": "cpu", "baseline": "adamw",
    "scaling": [0.125, 0.25, 0.5, 1.0, 2.0], "max_extrapolation": 2.0, "tau_max": 4.0,
    "seed": 0}


def test_bench_config_reads_a_stored_config_back_to_the_same_dict():
    config = BenchConfig.stored(OLD_STORED)  # stored before `compile` existed: ran eagerly
    assert config.optimizers == ("adamw", "lion") and config.scaling[0] == 0.125
    assert config.as_dict() == {**OLD_STORED, "compile": "false"}
    assert BenchConfig.stored(config.as_dict()) == config
    assert BenchConfig("adamw, lion", "quadratic") == BenchConfig(["adamw", "lion"],
                                                                 ["quadratic"])


@pytest.mark.parametrize(("change", "match"), [
    ({"trials": 0}, "trials must be a positive integer"),
    ({"seeds": True}, "seeds must be a positive integer"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"sampler": "grid"}, "unknown sampler 'grid'"),
    ({"pruner": "median"}, "unknown pruner 'median'"),
    ({"schedule": "step"}, "unknown schedule 'step'"),
    ({"scaling": [0.5, 0]}, "scaling fractions must be positive"),
    ({"tau_max": 1}, "tau_max must exceed 1"),
    ({"max_extrapolation": float("nan")}, "max_extrapolation must be a number"),
    ({"seed": -1}, "seed must be an integer"),
    ({"colour": "red"}, r"unknown bench option\(s\) \['colour'\]"),
])
def test_bench_config_errors_name_the_bad_setting(change, match):
    with pytest.raises(ValueError, match=match):
        BenchConfig.from_dict({**OLD_STORED, **change})


def test_bench_flags_override_the_config_file(tmp_path):
    """optforge bench --config FILE: the file's settings, those given as flags over them."""
    from optforge.cli import app

    toml = tmp_path / "bench.toml"
    toml.write_text('optimizers = ["adamw"]\ntasks = ["quadratic"]\ntrials = 5\nseeds = 1\n'
                    'steps = 8\nevals = 1\nbatch = 1\nsampler = "random"\n')
    assert tomllib.loads(toml.read_text())["trials"] == 5
    out = tmp_path / "run"
    done = CliRunner().invoke(app, ["bench", "--config", str(toml), "--trials", "1",
                                    "--out", str(out), "--no-plots"])
    assert done.exit_code == 0, done.output
    with RunStore.open(out, readonly=True) as store:
        stored = store.config
    expected = BenchConfig.from_toml(toml).override(trials=1).as_dict()
    assert stored == expected and stored["trials"] == 1 and stored["sampler"] == "random"
    bad = tmp_path / "bad.toml"
    bad.write_text("trials = 0\n")
    refused = CliRunner().invoke(app, ["bench", "--config", str(bad), "--out",
                                       str(tmp_path / "none")])
    assert refused.exit_code == 2 and "trials must be a positive integer" in refused.output
    assert not (tmp_path / "none").exists()


def test_moved_names_still_import_from_their_old_home():
    import optforge.evaluation
    from optforge.search.fitness import Fitness

    assert Fitness is optforge.evaluation.Fitness
