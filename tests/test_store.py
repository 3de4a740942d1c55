"""The run store: creation, refusal of foreign/corrupt/used directories, records, summaries."""

import hashlib
import json
import math
import sqlite3
from dataclasses import asdict

import pytest

from optforge import zoo
from optforge.evaluation import OK, Evaluation, Job, Outcome
from optforge.store import FILE, Journal, ReplayError, RunStore, StoreError
from optforge.store.summary import list_runs, summarize


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _foreign(d):
    db = sqlite3.connect(d / FILE)
    db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('format', 'optforge-run-1')")
    db.commit()
    db.close()


def _corrupt(d):
    (d / FILE).write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)


def _not_sqlite(d):
    (d / FILE).write_text("hello, I am a text file\n")


@pytest.mark.parametrize("make, message", [
    (_foreign, "another application"),
    (_corrupt, "corrupt"),
    (_not_sqlite, "not an SQLite database"),
])
def test_foreign_or_corrupt_store_is_refused_and_left_untouched(tmp_path, make, message):
    make(tmp_path)
    before = _digest(tmp_path / FILE)
    names = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(StoreError, match=message):
        RunStore.open(tmp_path)
    with pytest.raises(StoreError):
        RunStore.create(tmp_path, "search", {})
    assert _digest(tmp_path / FILE) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no -wal/-shm created


def test_directories_that_are_not_runs(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        RunStore.open(f)
    with pytest.raises(StoreError, match="is a file"):
        RunStore.create(f, "search", {})
    assert f.read_text() == "x"
    with pytest.raises(StoreError, match="does not exist"):
        RunStore.open(tmp_path / "nope")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not an optforge run directory"):
        RunStore.open(tmp_path / "d")
    with pytest.raises(StoreError, match="not empty"):
        RunStore.create(tmp_path / "d", "search", {})
    assert (tmp_path / "d" / "notes.txt").read_text() == "keep me"
    RunStore.create(tmp_path / "r", "search", {}).close()
    with pytest.raises(StoreError, match="resume it"):
        RunStore.create(tmp_path / "r", "search", {})


def test_records_round_trip_and_are_never_duplicated(tmp_path):
    program = zoo.load("adamw")
    ev = Evaluation(0.25, scores={"quadratic": 0.25}, losses={"quadratic": 1e-3},
                    best_lr={"quadratic": 0.01}, checkpoints={"quadratic@0.25": -math.inf})
    with RunStore.create(tmp_path / "r", "search", {"seed": 3}, in_flight=2) as store:
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        Journal(store).record_outcome(0, Outcome(Job(7, program, "tier0", {"q@0.5": 0.1}), ev,
                                                 OK, 1.5, "host:1", 2))
        with pytest.raises(sqlite3.IntegrityError):
            Journal(store).record_outcome(0, Outcome(Job(7, program, "tier0"), ev))
        store.event("note", x=1)
    with RunStore.open(tmp_path / "r", readonly=True) as store:
        assert store.config == {"seed": 3} and store.meta("in_flight") == 2
        row = Journal(store).get(0)
        assert (row["key"], row["hash"], row["stage"], row["status"]) == (7, program.hash,
                                                                          "tier0", "ok")
        assert store.cached(program.hash, "tier0") == ev
        assert store.cached(program.hash, "tier1") is None
        assert store.count("evaluations") == 1
        with pytest.raises(StoreError, match="read-only"):
            store.event("x")
    s = summarize(tmp_path / "r")
    assert s.evaluations == 1 and s.statuses == {"ok": 1} and s.seconds == 1.5
    assert s.best[0]["source"] == str(program) and s.best[0]["fitness"] == 0.25
    assert [r.path for r in list_runs(tmp_path)] == [tmp_path / "r"]


def test_runs_cli_show_and_list(tmp_path):
    from typer.testing import CliRunner

    from optforge.cli.runs import runs_app

    with RunStore.create(tmp_path / "r", "search", {}) as store:
        Journal(store).record_outcome(0, Outcome(Job(0, zoo.load("lion"), "tier0"),
                                                 Evaluation(0.5)))
        store.event("start")
    runner = CliRunner()
    shown = runner.invoke(runs_app, ["show", str(tmp_path / "r")])
    assert shown.exit_code == 0, shown.output
    assert "evaluations: 1 (1 ok)" in shown.output and "def lion" in shown.output
    listed = runner.invoke(runs_app, ["list", str(tmp_path)])
    assert listed.exit_code == 0 and "search" in listed.output
    (tmp_path / "bad").mkdir()
    bad = runner.invoke(runs_app, ["show", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "run.sqlite" in bad.output


def test_a_failed_create_leaves_the_directory_empty_for_a_retry(tmp_path):
    """A config that cannot be stored fails the create; the directory holds nothing (no
    run.lock, no half-built file), so the same create then succeeds there."""
    run = tmp_path / "run"
    with pytest.raises(TypeError):
        RunStore.create(run, "search", {"bad": object()})
    assert run.is_dir() and list(run.iterdir()) == []
    with RunStore.create(run, "search", {"ok": 1}) as store:
        assert store.path == run


def test_the_journal_replays_rows_written_before_it_and_names_what_differs(tmp_path):
    """Rows as format optforge-run-1 wrote them before the journal existed (positional
    INSERTs, the text of the old encoder) are replayed; another request is refused with
    the columns (and JSON keys) that differ."""
    program = zoo.load("adamw")
    ev = Evaluation(0.25, scores={"quadratic": 0.25}, best_lr={"quadratic": 0.01})
    with RunStore.create(tmp_path / "r", "search", {}) as store:
        with store.db:
            store.db.execute("INSERT INTO programs VALUES (?, ?, ?)",
                             (program.hash, str(program), None))
            store.db.execute("INSERT INTO evaluations VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                             (0, 7, program.hash, "tier0", '{"q@0.5":0.1}', 0.25, 1, "ok", None,
                              1.5, "host:1", 1, "run", json.dumps(asdict(ev)), 0.0))
        journal = Journal(store)
        assert len(journal) == 1
        assert journal.replay_job(0, Job(7, program, "tier0", {"q@0.5": 0.1})) == ev
        assert journal.replay_job(1, Job(8, program, "tier0")) is None
        with pytest.raises(ReplayError, match=r"submission 0 was job 7 \(tier0, program "
                           r"\w{12}\) in the stored run but is job 7 \(tier0, program \w{12}\) "
                           r"now \(differing: thresholds\.q@0\.5\)"):
            journal.replay_job(0, Job(7, program, "tier0", {"q@0.5": 0.2}))
        with pytest.raises(ReplayError, match=r"differing: key, stage\)"):
            journal.replay_job(0, Job(8, program, "tier1", {"q@0.5": 0.1}))
