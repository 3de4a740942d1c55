"""Resume: SIGKILL a search at random points, resume it, compare with an uninterrupted run."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optforge import zoo
from optforge.lang import Program
from optforge.lang.fingerprint import PROBE_STEPS_V1, fingerprint
from optforge.runtime import InlineBackend
from optforge.search import Search, SearchConfig
from optforge.search.filters import FILTERS, FILTERS_V1
from optforge.search.fitness import TargetFitness
from optforge.search.stored import open_run
from optforge.store import ReplayError, RunStore

CONFIG = dict(seed=3, evaluations=100, population=10, tournament=4, init=["sgd"],
              tiers=["tiny:quadratic@20", "tiny:quadratic@30"], heldout="",
              promote_threshold=-50.0, promote_max=2, simplify_top=1, simplify_evaluations=4,
              # islands, migration, resets and archive parents: all must replay exactly
              islands=2, migrate_every=7, reset_every=20, archive_parent=0.2)
IN_FLIGHT = 2


class Slow:
    """TargetFitness (towards AdamW) taking >= 10 ms per evaluation, so kills land mid-run."""

    def __init__(self, delay: float = 0.01):
        self.fitness, self.delay, self.calls = TargetFitness(zoo.load("adamw")), delay, 0

    def evaluate(self, program, stage, thresholds=None):
        self.calls += 1
        time.sleep(self.delay)
        return self.fitness.evaluate(program, stage, thresholds)


def run(path: Path, config: dict = CONFIG, caches=(), delay: float = 0.01):
    """Create or resume the run in ``path``; return the result and the fitness."""
    cfg = SearchConfig(**config)
    store = RunStore.open(path) if path.exists() else RunStore.create(path, "search",
                                                                      cfg.as_dict())
    fitness = Slow(delay)
    with store:
        result = Search(cfg, fitness=fitness, store=store, caches=caches,
                        make_evaluator=lambda f: InlineBackend(f, IN_FLIGHT)).run()
    return result, fitness


CHILD = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_resume import Slow, run
Slow()  # the first optimizer step's lazy imports, before the test starts its clock
print("running", flush=True)
run(Path(sys.argv[1]), delay=float(sys.argv[2]))
print("done", flush=True)
"""


def tables(path: Path) -> dict:
    """Everything that must match an uninterrupted run (not times, workers or events)."""
    def untimed(text: str) -> dict:
        ev = json.loads(text)
        ev.pop("seconds")  # wall time inside the fitness
        return ev

    with RunStore.open(path, readonly=True) as s:
        return {
            "evaluations": [(*row[:-1], untimed(row[-1])) for row in s.rows(
                "SELECT seq, key, hash, stage, thresholds, fitness, complete, status, evaluation "
                "FROM evaluations ORDER BY seq")],
            "programs": list(s.rows("SELECT * FROM programs ORDER BY hash")),
            "individuals": list(s.rows("SELECT * FROM individuals ORDER BY id")),
            "snapshots": list(s.rows("SELECT evaluated, population, rng, counters, best "
                                     "FROM snapshots ORDER BY evaluated")),
            "status": s.meta("status"),
        }


def _result(path: Path) -> dict:
    data = json.loads((path / "result.json").read_text())
    data.pop("seconds")
    return json.loads(json.dumps(data), object_hook=lambda d: {k: v for k, v in d.items()
                                                                if k != "seconds"})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "run"
    result, fitness = run(path)
    assert fitness.calls == len(tables(path)["evaluations"]) > CONFIG["evaluations"]
    return path


def test_killed_at_random_points_and_resumed_equals_uninterrupted(tmp_path, reference):
    path = tmp_path / "run"
    rng = random.Random(7)
    kills, mid_run, env = 0, 0, {**os.environ, "PYTHONHASHSEED": "random"}
    for attempt in range(8):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), "0.01"],
                                 stdout=subprocess.PIPE, text=True, env=env)
        assert child.stdout.readline().strip() == "running"
        if attempt < 3:
            time.sleep(rng.uniform(0.1, 1.5))
            child.send_signal(signal.SIGKILL)
        code = child.wait(timeout=120)
        if code == -signal.SIGKILL:
            kills += 1
            if path.exists():
                with RunStore.open(path, readonly=True) as s:
                    mid_run += s.count("evaluations") > 0 and s.meta("status") == "running"
            continue
        assert code == 0
        break
    assert mid_run >= 2, "the search was not killed mid-run"
    got, want = tables(path), tables(reference)
    seqs = [row[0] for row in got["evaluations"]]
    assert seqs == list(range(len(seqs)))  # no gaps, no duplicates
    assert got == want
    assert _result(path) == _result(reference)
    with RunStore.open(path, readonly=True) as s:
        resumes = next(s.rows("SELECT COUNT(*) FROM events WHERE kind='resume'"))[0]
    assert mid_run <= resumes <= kills


def test_rejections_per_filter_add_up_and_survive_a_resume(tmp_path, reference):
    """``filtered_by`` splits ``filtered`` by filter, in every snapshot and at the end, and a
    run interrupted mid-evolution resumes to the uninterrupted run's split."""
    want = _result(reference)["counters"]
    assert set(want["filtered_by"]) == set(FILTERS)  # this run meets every filter
    assert sum(want["filtered_by"].values()) == want["filtered"] > 0

    class Stop(KeyboardInterrupt):
        pass

    def stop(progress) -> None:
        if progress.counters.evaluated >= 40:
            raise Stop

    path, cfg = tmp_path / "run", SearchConfig(**CONFIG)
    with RunStore.create(path, "search", cfg.as_dict()) as store, pytest.raises(Stop):
        Search(cfg, fitness=Slow(0), store=store, on_progress=stop,
               make_evaluator=lambda f: InlineBackend(f, IN_FLIGHT)).run()
    snapshots = [json.loads(row[3]) for row in tables(path)["snapshots"]]
    assert len(snapshots) == 40 and snapshots[-1]["filtered"] > 0
    assert all(sum(c["filtered_by"].values()) == c["filtered"] for c in snapshots)
    result, _ = run(path, delay=0)
    assert _result(path)["counters"] == want
    split = ", ".join(f"{f} {want['filtered_by'][f]}" for f in FILTERS)
    assert f"({want['filtered']} by the invariance filters: {split})" in result.summary()
    assert tables(path)["snapshots"] == tables(reference)["snapshots"]


def test_resuming_a_finished_run_trains_nothing(tmp_path, reference):
    import shutil

    path = tmp_path / "copy"
    shutil.copytree(reference, path)
    result, fitness = run(path)
    assert fitness.calls == 0
    assert tables(path) == tables(reference)


def test_resume_with_another_configuration_is_refused(tmp_path):
    path = tmp_path / "run"
    run(path, {**CONFIG, "evaluations": 12}, delay=0)
    before = tables(path)
    cfg = SearchConfig(**{**CONFIG, "evaluations": 12, "seed": 4})
    with RunStore.open(path) as store, pytest.raises(ReplayError, match="changed"):
        Search(cfg, fitness=Slow(0), store=store,
               make_evaluator=lambda f: InlineBackend(f, IN_FLIGHT)).run()
    assert tables(path)["evaluations"] == before["evaluations"]


def test_a_run_stored_before_fingerprint_steps_keeps_the_three_step_probe(tmp_path):
    """A run whose stored config lacks ``fingerprint_steps`` (made before the setting)
    runs and resumes with the three-step probe its cache decisions were made with."""
    old = SearchConfig(**{**CONFIG, "evaluations": 12}).as_dict()
    del old["fingerprint_steps"]
    path = tmp_path / "old"
    RunStore.create(path, "search", old).close()
    stored = []
    for _ in range(2):  # run, then resume the finished run: nothing trained, nothing changed
        config, store = open_run(path)
        assert config.fingerprint_steps == list(PROBE_STEPS_V1)
        fitness = Slow(0)
        with store:
            Search(config, fitness=fitness, store=store,
                   make_evaluator=lambda f: InlineBackend(f, IN_FLIGHT)).run()
        with RunStore.open(path, readonly=True) as s:
            programs = s.programs()
        prints = [(Program.parse(src), fp) for src, fp in programs.values() if fp is not None]
        assert len(prints) > 12
        assert all(fp == fingerprint(p, PROBE_STEPS_V1) != fingerprint(p) for p, fp in prints)
        stored.append(tables(path))
    assert fitness.calls == 0 and stored[0] == stored[1]


@pytest.mark.parametrize("stored, resumed", [
    (["scale", "lr"], ["scale", "lr"]), ([], []), (None, list(FILTERS_V1))],
    ids=["listed", "none", "unlisted"])
def test_a_run_stored_before_the_weight_filter_resumes_without_it(tmp_path, stored, resumed):
    """A stored filter list (even an empty one) is resumed as it is, and a stored config
    without one (made before the setting) gets the four filters of before ``weight``; a new
    run gets all."""
    old = SearchConfig(**{**CONFIG, "evaluations": 12}).as_dict()
    assert old["filters"] == list(FILTERS)  # a new run stores the default, with weight
    if stored is None:
        del old["filters"]
    else:
        old["filters"] = stored
    RunStore.create(tmp_path / "old", "search", old).close()
    config, store = open_run(tmp_path / "old")
    store.close()
    assert config.filters == resumed and "weight" not in config.filters


def test_cache_from_another_run_reuses_its_evaluations(tmp_path, reference):
    with RunStore.open(reference, readonly=True) as cache:
        result, fitness = run(tmp_path / "new", caches=[cache], delay=0)
    assert fitness.calls == 0  # every program was evaluated in the reference run
    got, want = tables(tmp_path / "new"), tables(reference)
    assert got == want
    with RunStore.open(tmp_path / "new", readonly=True) as s:
        sources = {r[0] for r in s.rows("SELECT DISTINCT source FROM evaluations")}
    assert sources == {f"cache:{reference}"}


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "optforge.cli", "search", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_cli_real_trainer_process_pool_killed_and_resumed(tmp_path):
    """The real trainer on 2 process workers and a queue of 1: SIGKILL the driver mid-run,
    --resume (with the default queue: the stored 3 jobs in flight hold), compare."""
    cfg = tmp_path / "s.toml"
    cfg.write_text('evaluations = 8\npopulation = 4\ntournament = 2\ninit = ["adamw"]\n'
                   'tiers = ["tiny:quadratic@20"]\nheldout = ""\nsimplify_top = 0\n')
    flags = ["-c", str(cfg), "--backend", "process", "--workers", "2", "--queue", "1"]
    ref = _cli(*flags, "--out", str(tmp_path / "ref"))
    run_dir = tmp_path / "run"
    child = _cli(*flags, "--out", str(run_dir))
    deadline = time.time() + 120
    while time.time() < deadline:
        if (run_dir / "run.sqlite").exists():
            with RunStore.open(run_dir, readonly=True) as s:  # never half-initialised
                if s.count("evaluations") >= 3:
                    break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=60) == -signal.SIGKILL
    assert ref.wait(timeout=300) == 0, ref.stdout.read()
    with RunStore.open(run_dir, readonly=True) as s:
        assert s.meta("status") == "running" and s.count("evaluations") < 9
        assert s.meta("in_flight") == 3
    again = _cli("--resume", str(run_dir), "--backend", "process", "--workers", "2")
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0, out
    assert tables(run_dir) == tables(tmp_path / "ref")
    assert _result(run_dir) == _result(tmp_path / "ref")
    bad = _cli("--resume", str(run_dir), "--evaluations", "3")
    assert bad.wait(timeout=60) == 2 and "--resume takes the configuration" in bad.stdout.read()
