"""Bench runs in the run store: SIGKILL a real benchmark at random points, resume, compare.

The benchmark is tiny but real (AdamW, Lion and a diverging program file on the
quadratic task, 100 steps, successive-halving pruning): every training run is
the real trainer's. The reference is the same benchmark run without
interruption in a fresh interpreter (another hash seed), started first and run
alongside; the killed runs are processes forked from a fork server that has
imported optforge once, so that each start costs milliseconds, not seconds.
"""

import contextlib
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optforge.bench.config import BenchConfig
from optforge.bench.stored import create_run, resume_bench
from optforge.runtime.pool import PRELOAD
from optforge.store import FILE, ReplayError, RunStore, StoreError

BLOWUP = "def blowup(w, g, lr):\n    update = g * 1e30\n    return update\n"
SETTINGS = ["--trials", "6", "--batch", "2", "--seeds", "2", "--steps", "100", "--evals", "4",
            "--tasks", "quadratic", "--no-plots"]
CHILD = """
import sys
import torch
torch.set_num_threads(1)
from optforge.cli import app
app(sys.argv[1:])
"""


def _new_args(tmp: Path, out: Path) -> list[str]:
    """A new run of the benchmark, with the program file given as ``blowup.py`` in ``tmp``."""
    (tmp / "blowup.py").write_text(BLOWUP)
    return ["bench", "--optimizers", "adamw,lion,blowup.py", *SETTINGS, "--out", str(out)]


def _cli(args: list[str], cwd: str) -> None:  # pragma: no cover - in a forked child
    """``optforge ARGS`` in ``cwd``, output discarded."""
    import torch

    torch.set_num_threads(1)
    os.chdir(cwd)
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    from optforge.cli import app

    app(args)


def _fork(args: list[str], cwd: Path) -> mp.Process:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([*PRELOAD, "optforge.cli", "optforge.bench.run",
                                "optforge.bench.stored"])
    proc = ctx.Process(target=_cli, args=(args, str(cwd)), daemon=True)
    proc.start()
    return proc


class Reference:
    """The uninterrupted run, in a subprocess started by the fixture."""

    def __init__(self, tmp: Path):
        self.path = tmp / "run"
        env = {**os.environ, "PYTHONHASHSEED": "random", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, *_new_args(tmp, self.path)],
                                     cwd=tmp, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env)

    def wait(self) -> Path:
        out = self.proc.communicate(timeout=300)[0]
        assert self.proc.returncode == 0, out
        return self.path


def _units(path: Path) -> int:
    if not (path / FILE).exists():
        return 0
    with RunStore.open(path, readonly=True) as s:
        return s.count("units")


def _runs_begun(path: Path) -> int:
    """Start and resume events: how many processes got as far as opening the run."""
    if not (path / FILE).exists():
        return 0
    with RunStore.open(path, readonly=True) as s:
        return next(s.rows("SELECT COUNT(*) FROM events WHERE kind IN ('start', 'resume')"))[0]


def units(path: Path) -> list:
    """The recorded training runs, without their timings."""
    with RunStore.open(path, readonly=True) as s:
        rows = list(s.rows("SELECT seq, task, optimizer, unit, request, status, result "
                           "FROM units ORDER BY seq"))
    out = []
    for *head, result in rows:
        r = json.loads(result)
        r.pop("wall_time", None)
        r.pop("extra", None)
        out.append((*head, json.dumps(r, sort_keys=True)))
    return out


def results(path: Path) -> dict:
    """results.json without wall times and file names."""
    data = json.loads((path / "results.json").read_text())
    for key in ("wall_time", "files"):
        data.pop(key)
    for e in data["entries"]:
        e.pop("wall_time")
    return data


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ref = Reference(tmp_path_factory.mktemp("ref"))
    yield ref
    with contextlib.suppress(ProcessLookupError):
        ref.proc.kill()


@pytest.fixture
def ref(reference) -> Path:
    return reference.wait()


BASE = 16  # 3 optimizers x (3 tuning batches + final runs) + 4 baseline budgets
PLANNED = 34  # at most: each optimizer + 3 widening rounds of 2 batches (3 trials, batch 2)
DONE = 21  # blowup diverges in tuning: no final runs; lion and adamw widen: 3 rounds between
# them on the quadratic (which wants larger learning rates in 100 steps), replayed as well


def test_killed_at_random_points_and_resumed_equals_uninterrupted(tmp_path, reference):
    path = tmp_path / "run"
    rng = random.Random(11)
    # kill once the store holds k runs, k random and increasing, plus a random moment
    # into the next run (tens to hundreds of ms each), so that one is cut mid-training
    targets = sorted(rng.sample(range(1, DONE - 3), 3))
    for kills, target in enumerate(targets):
        child = _fork(_new_args(tmp_path, path) if kills == 0 else ["bench", "--resume",
                                                                    str(path)], tmp_path)
        deadline = time.time() + 120
        # this process has begun (a kill before that would test nothing, and log no resume)
        while _runs_begun(path) <= kills and child.is_alive() and time.time() < deadline:
            time.sleep(0.01)
        while _units(path) < target and child.is_alive() and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.15))
        child.kill()
        child.join(60)
        assert child.exitcode == -signal.SIGKILL
        with RunStore.open(path, readonly=True) as s:
            assert s.meta("status") == "running" and target <= s.count("units") < DONE
    again = _fork(["bench", "--resume", str(path)], tmp_path)
    again.join(300)
    assert again.exitcode == 0
    got, want = units(path), units(reference.wait())
    assert [row[0] for row in got] == list(range(DONE))  # no gap, no duplicate
    assert got == want
    assert {row[5] for row in got} >= {"ok", "stopped"}  # pruned runs were replayed too
    assert results(path) == results(reference.path)  # tuned configurations, scores, stats
    with RunStore.open(path, readonly=True) as s:
        events = [k for (k,) in s.rows("SELECT kind FROM events ORDER BY id")]
        assert s.meta("status") == "finished"
    assert events == ["start"] + ["resume"] * len(targets) + ["finish"]


def test_the_reference_is_a_real_benchmark(ref):
    data = results(ref)
    fates = {e["optimizer"]: (e["status"], e["reason"]) for e in data["entries"]}
    assert fates == {"adamw": ("ok", None), "lion": ("ok", None),
                     "blowup": ("failed", "diverged in all 6 tuning trials")}
    trials = [t for e in data["entries"] for t in e["tuning"]["trials"]]
    assert {t["state"] for t in trials} >= {"complete", "pruned", "diverged"}
    assert {t["round"] for t in trials} >= {0, 1}  # the SIGKILL test replays widening rounds
    with RunStore.open(ref, readonly=True) as s:
        assert s.kind == "bench" and (s.meta("planned"), s.meta("planned_base")) == (PLANNED,
                                                                                  BASE)
        assert s.config["optimizers"][:2] == ["adamw", "lion"]
        labels = [c["label"] for c in s.meta("candidates")]
    assert labels == ["adamw", "lion", "blowup"]
    assert len(units(ref)) == DONE


def test_resuming_a_finished_run_trains_nothing(tmp_path, ref):
    path = tmp_path / "copy"
    shutil.copytree(ref, path)
    (path / "results.json").unlink()
    program = ref.parent / "blowup.py"
    program.rename(tmp_path / "moved.py")  # the program file is not read again: it is stored
    try:
        resume_bench(path, plots=False)
    finally:
        (tmp_path / "moved.py").rename(program)
    assert results(path) == results(ref)
    with RunStore.open(path, readonly=True) as s:
        (last,) = next(s.rows("SELECT data FROM events WHERE kind='finish' ORDER BY id DESC"))
    assert json.loads(last)["computed"] == 0 and json.loads(last)["replayed"] == DONE
    assert units(path) == units(ref)


def test_a_changed_benchmark_is_refused_on_resume(tmp_path, ref):
    path = tmp_path / "copy"
    shutil.copytree(ref, path)
    db = sqlite3.connect(path / FILE)
    with db:  # as if the code now trained run 2 on other seeds
        request = json.loads(db.execute("SELECT request FROM units WHERE seq=2").fetchone()[0])
        request["seeds"] = [0, 1]
        db.execute("UPDATE units SET request=? WHERE seq=2", (json.dumps(request),))
    db.close()
    before = units(path)
    with pytest.raises(ReplayError, match="training run 2 was tune/2 of adamw"):
        resume_bench(path, plots=False)
    assert units(path) == before


def test_cli_errors_lose_nothing(tmp_path, ref):
    from optforge.cli import app

    runner = CliRunner(env={"COLUMNS": "300"})  # no line breaks in the messages
    bad = runner.invoke(app, ["bench", "--resume", str(ref), "--trials", "3"])
    assert bad.exit_code == 2 and "--resume takes the settings" in bad.output
    used = runner.invoke(app, ["bench", "-o", "adamw", "-t", "quadratic", "--out",
                               str(ref)])
    assert used.exit_code == 2 and "not empty" in used.output
    missing = runner.invoke(app, ["bench", "-t", "quadratic"])
    assert missing.exit_code == 2 and "--optimizers and --tasks" in missing.output
    typo = runner.invoke(app, ["bench", "-o", "adamz", "-t", "quadratic", "--out",
                               str(tmp_path / "typo")])
    assert typo.exit_code == 2 and "adamz" in typo.output
    assert not (tmp_path / "typo").exists()  # checked before the run directory is made
    search = tmp_path / "search"
    RunStore.create(search, "search", {}).close()
    other = runner.invoke(app, ["bench", "--resume", str(search)])
    assert other.exit_code == 2 and "is a search run, not a bench run" in other.output
    with pytest.raises(StoreError, match="not an optforge run directory"):
        resume_bench(tmp_path)
    with pytest.raises(ValueError, match="unknown sampler"):
        create_run(tmp_path / "x", BenchConfig(["adamw"], ["quadratic"], sampler="grid"))
    assert not (tmp_path / "x").exists()


def test_runs_list_and_show_a_bench_run(ref, monkeypatch):
    from rich.console import Console

    from optforge.cli import runs as cli

    monkeypatch.setattr(cli, "console", Console(width=300))  # no line breaks
    runner = CliRunner()
    shown = runner.invoke(cli.runs_app, ["show", str(ref)])
    assert shown.exit_code == 0, shown.output
    for text in ("bench run, finished", "optimizers: adamw, lion, blowup (baseline adamw)",
                 "tasks: quadratic",
                 "training runs: 21 done of 16 planned, at most 34 with every widening round",
                 "diverged in all 6 tuning trials", "performance-profile scores: adamw"):
        assert text in shown.output, text
    listed = runner.invoke(cli.runs_app, ["list", str(ref.parent)])
    assert listed.exit_code == 0 and "21/34 runs" in listed.output
