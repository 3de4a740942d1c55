"""The run store: one SQLite database per run directory, written by the driver only.

``RUN_DIR/run.sqlite`` (WAL journal, ``synchronous=NORMAL``: in WAL mode a
committed transaction survives the death of the process at any instant, which
is the failure this store is for; only a power cut can lose the last few
commits, and those evaluations are simply computed again on resume).

Tables (see docs/RUNS.md):

* ``meta(key, value)``: format, kind (``search``/``bench``), config (JSON),
  fitness identity, jobs in flight, status, created/finished times;
* ``programs(hash, source, fingerprint)``: every distinct program met;
* ``individuals(id, hash, parent, mutation, born, reused, fitness)``: lineage;
* ``evaluations(seq, key, hash, stage, thresholds, fitness, complete, status,
  error, seconds, worker, attempts, source, evaluation, finished)``: one row per
  finished job, ``seq`` its submission number (unique, so nothing is recorded
  twice), ``evaluation`` the whole result (scores, losses, best learning rate
  per task, checkpoint scores) as JSON;
* ``snapshots(evaluated, population, rng, counters, best, time)``: after every
  result the search consumes: population ids, RNG states, counters;
* ``events(id, time, kind, data)``: start, resume, phase, finish, errors.

The journal tables (``evaluations``; a bench run's ``units``) are written and
replayed through :class:`~optforge.store.journal.Journal`; :meth:`RunStore.begin`
and :meth:`RunStore.finish` write a run's lifecycle (start or resume, then status,
finish event and, for a search, ``result.json``); the reading methods give report,
export and ``optforge runs`` what they show. No SQL is written outside this package.

Every write is one transaction. A file that is not an optforge store, or that
fails SQLite's ``PRAGMA quick_check``, raises :class:`StoreError` and is never
written to: the check runs read-only before anything else.

A process that writes a run holds :class:`RunLock` (an advisory ``flock`` on
``RUN_DIR/run.lock``, which names its PID): a second writer is refused, never
interleaved; the kernel drops the lock when the holder dies, even by SIGKILL.
Readers take no lock and open the file read-only (``mode=ro``; on read-only
media, where SQLite cannot create the WAL index, ``immutable=1``).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..evaluation import Evaluation

FILE = "run.sqlite"
LOCK = "run.lock"
RESULT = "result.json"
"""A finished search's :class:`~optforge.search.SearchResult` as JSON, beside the store."""
JOURNALS = {"search": "evaluations", "bench": "units"}
"""Each kind's journal table (:mod:`optforge.store.journal`): one row per finished request."""
FORMAT = "optforge-run-1"
APPLICATION_ID = 0x6F70666F  # "opfo"

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE programs (hash TEXT PRIMARY KEY, source TEXT NOT NULL, fingerprint TEXT);
CREATE TABLE individuals (id INTEGER PRIMARY KEY, hash TEXT NOT NULL REFERENCES programs(hash),
    parent INTEGER, mutation TEXT NOT NULL, born INTEGER NOT NULL, reused INTEGER NOT NULL,
    fitness REAL);
CREATE TABLE evaluations (seq INTEGER PRIMARY KEY, key INTEGER NOT NULL,
    hash TEXT NOT NULL, stage TEXT NOT NULL, thresholds TEXT NOT NULL, fitness REAL,
    complete INTEGER NOT NULL, status TEXT NOT NULL, error TEXT, seconds REAL NOT NULL,
    worker TEXT NOT NULL, attempts INTEGER NOT NULL, source TEXT NOT NULL,
    evaluation TEXT NOT NULL, finished REAL NOT NULL);
CREATE INDEX evaluations_hash ON evaluations (hash, stage);
CREATE TABLE snapshots (evaluated INTEGER PRIMARY KEY, population TEXT NOT NULL,
    rng TEXT NOT NULL, counters TEXT NOT NULL, best REAL, time REAL NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL,
    kind TEXT NOT NULL, data TEXT NOT NULL);
"""


class StoreError(Exception):
    """A run directory that cannot be used (missing, foreign, corrupt, in use, or already
    a run), or a store that failed while the run was writing it: never a candidate's
    failure, always the end of the command."""


STORE_ERRORS = (StoreError, sqlite3.Error)
"""What a failing store raises: handlers of a candidate's own failures re-raise these."""


def write_result(directory: str | Path, text: str) -> Path:
    """``text`` into ``directory``/:data:`RESULT`, atomically (written aside, renamed into
    place: a reader sees the old file or the whole new one). In a run directory
    :meth:`RunStore.finish` is its one caller."""
    path = Path(directory) / RESULT
    tmp = path.with_name(f".{RESULT}.new")
    tmp.write_text(text)
    tmp.rename(path)
    return path


class RunLock:
    """An exclusive advisory lock on ``RUN_DIR/run.lock`` for the process that writes the
    run; :class:`StoreError` naming the holder's PID if another process holds it."""

    def __init__(self, path: Path):
        file = path / LOCK
        try:
            fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise StoreError(f"cannot lock {path} for writing ({err.strerror}); nothing "
                             "was written") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise StoreError(f"{path} is in use by {who} (it holds {file}); wait for it to "
                             "finish or stop it, then retry; nothing was written") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd: int | None = fd

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # drops the flock
            self.fd = None


def _plain(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # a numpy scalar or array
        return obj.tolist()
    raise TypeError(f"cannot store a {type(obj).__name__}")


def dumps(obj: Any) -> str:
    """JSON with sorted keys, exact floats (``repr``), NaN and infinities as JSON's
    extensions, numpy values as plain numbers and lists."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_plain)


def evaluation_from(text: str) -> Evaluation:
    return Evaluation(**json.loads(text))


def real(x: float) -> float | None:
    """NaN as SQL NULL."""
    return None if isinstance(x, float) and math.isnan(x) else x


class RunStore:
    """An open run directory. ``RunStore.create`` a new one, ``RunStore.open`` an existing one."""

    def __init__(self, path: Path, db: sqlite3.Connection, readonly: bool,
                 lock: RunLock | None = None):
        self.path, self.db, self.readonly, self.lock = path, db, readonly, lock
        self.seconds = 0.0  # time spent in writes (store overhead)

    # ---------------------------------------------------------- opening
    @classmethod
    def create(cls, path: str | Path, kind: str, config: dict, schema: str = "",
               **meta: Any) -> RunStore:
        """A new run in ``path`` (which must not exist, or be an empty directory); ``schema``:
        the kind's own tables (e.g. :data:`optforge.store.bench.SCHEMA`), created with the rest."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise StoreError(f"{path} is a file, not a run directory; nothing was written")
        if path.is_dir() and any(path.iterdir()):
            hint = (" (it is a run: resume it with --resume)" if (path / FILE).exists()
                    else "")
            raise StoreError(f"{path} exists and is not empty{hint}; pick a new directory")
        path.mkdir(parents=True, exist_ok=True)
        lock = RunLock(path)
        try:
            cls._build(path, kind, config, schema, meta)
            return cls(path, cls._connect(path / FILE), readonly=False, lock=lock)
        except BaseException:
            lock.release()
            if not (path / FILE).exists():  # nothing was made: leave the directory empty
                for name in (LOCK, f".{FILE}.new"):
                    (path / name).unlink(missing_ok=True)
            raise

    @staticmethod
    def _build(path: Path, kind: str, config: dict, schema: str, meta: dict) -> None:
        # built aside and renamed into place: a run.sqlite is never half-initialised
        tmp = path / f".{FILE}.new"
        tmp.unlink(missing_ok=True)
        init = sqlite3.connect(tmp)
        with init:
            init.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            init.executescript(SCHEMA + schema)
            rows = {"format": FORMAT, "kind": kind, "config": dumps(config), "status": "running",
                    "created": repr(time.time()), **{k: dumps(v) for k, v in meta.items()}}
            init.executemany("INSERT INTO meta VALUES (?, ?)", rows.items())
        init.close()
        tmp.rename(path / FILE)

    @classmethod
    def open(cls, path: str | Path, readonly: bool = False) -> RunStore:
        """An existing run; :class:`StoreError` (nothing written) if ``path`` is not one, if
        it is corrupt, or (unless ``readonly``) if another process is writing it."""
        path = Path(path)
        if not path.exists():
            raise StoreError(f"run directory {path} does not exist")
        if not path.is_dir():
            raise StoreError(f"{path} is a file, not a run directory")
        file = path / FILE
        if not file.is_file():
            raise StoreError(f"{path} is not an optforge run directory (no {FILE})")
        db = cls._check(file)  # before the lock: a foreign directory gets no lock file
        if readonly:
            return cls(path, db, readonly=True)
        db.close()
        lock = RunLock(path)
        try:
            return cls(path, cls._connect(file), readonly=False, lock=lock)
        except BaseException:
            lock.release()
            raise

    @staticmethod
    def _reader(file: Path) -> sqlite3.Connection:
        """A read-only connection; ``immutable`` where SQLite cannot open the WAL index
        (a read-only directory or medium; nobody can be writing there)."""
        db = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError as err:
            db.close()
            if (getattr(err, "sqlite_errorcode", 0) & 0xFF) != sqlite3.SQLITE_CANTOPEN:
                raise  # e.g. busy: never read around a live writer
            return sqlite3.connect(f"file:{file}?mode=ro&immutable=1", uri=True)

    @classmethod
    def _check(cls, file: Path) -> sqlite3.Connection:
        """Inspect read-only: an optforge store of a known format that passes
        ``PRAGMA quick_check``, or StoreError; returns the read-only connection."""
        try:
            with file.open("rb") as f:
                head = f.read(16)
            if head != b"SQLite format 3\x00":
                raise StoreError(f"{file} is not an SQLite database (corrupt or foreign file); "
                                 "it was left untouched")
            db = cls._reader(file)
            try:
                app = db.execute("PRAGMA application_id").fetchone()[0]
                if app != APPLICATION_ID:
                    raise StoreError(f"{file} is an SQLite database of another application; "
                                     "it was left untouched")
                fmt = db.execute("SELECT value FROM meta WHERE key='format'").fetchone()
                if fmt is None or fmt[0] != FORMAT:
                    raise StoreError(f"{file} has unknown store format {fmt and fmt[0]!r}")
                problems = [r[0] for r in db.execute("PRAGMA quick_check(3)")]
                if problems != ["ok"]:
                    raise StoreError(f"{file} is corrupt (quick_check: {'; '.join(problems)})"
                                     "; it was left untouched")
            except BaseException:
                db.close()
                raise
            return db
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{file} is corrupt ({err}); it was left untouched") from None
        except OSError as err:
            raise StoreError(f"{file} cannot be read ({err.strerror})") from None

    @staticmethod
    def _connect(file: Path) -> sqlite3.Connection:
        db = sqlite3.connect(file, isolation_level="DEFERRED")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    def close(self) -> None:
        try:
            self.db.close()
        finally:
            if self.lock is not None:
                self.lock.release()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------- meta
    def meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        if row is None:
            return default
        if key in ("format", "kind", "status"):
            return row[0]
        return json.loads(row[0])

    def set_meta(self, **values: Any) -> None:
        with self._write():
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                [(k, v if k in ("status", "kind") else dumps(v))
                                 for k, v in values.items()])

    @property
    def kind(self) -> str:
        return self.meta("kind")

    @property
    def config(self) -> dict:
        return self.meta("config")

    # ---------------------------------------------------------- writing
    @contextmanager
    def _write(self) -> Iterator[None]:
        """One transaction, timed into ``self.seconds``."""
        if self.readonly:
            raise StoreError(f"{self.path} was opened read-only")
        t = time.perf_counter()
        with self.db:
            yield
        self.seconds += time.perf_counter() - t

    def begin(self, **data: Any) -> bool:
        """Log the run's start (``data`` with it) or, if it has started before, its
        resumption (status back to ``running``, with the journal's row count); True on a
        resumption."""
        started = self.db.execute("SELECT 1 FROM events WHERE kind='start' LIMIT 1").fetchone()
        if started is None:
            self.event("start", **data)
            return False
        self.set_meta(status="running")
        self.event("resume", recorded=self.count(JOURNALS[self.kind]))
        return True

    def finish(self, result: str | None = None, meta: dict | None = None, **data: Any) -> None:
        """Mark the run finished: ``result`` (JSON text) into :data:`RESULT` first, then the
        status, finish time and ``meta`` in ``meta``, then a ``finish`` event with ``data``
        and the time spent writing the store."""
        if result is not None:
            if self.readonly:
                raise StoreError(f"{self.path} was opened read-only")
            write_result(self.path, result)
        self.set_meta(status="finished", finished=time.time(), **(meta or {}))
        self.event("finish", **data, store_seconds=self.seconds)

    def event(self, kind: str, **data: Any) -> None:
        with self._write():
            self.db.execute("INSERT INTO events (time, kind, data) VALUES (?, ?, ?)",
                            (time.time(), kind, dumps(data)))

    def add_individuals(self, individuals: list) -> None:
        with self._write():
            self._individuals(individuals)

    def _individuals(self, individuals: list) -> None:
        self.db.executemany("INSERT OR IGNORE INTO programs VALUES (?, ?, ?)",
                            [(i.hash, str(i.program), i.fingerprint) for i in individuals])
        self.db.executemany("UPDATE programs SET fingerprint=? WHERE hash=?",
                            [(i.fingerprint, i.hash) for i in individuals])
        self.db.executemany(
            "INSERT OR IGNORE INTO individuals VALUES (?,?,?,?,?,?,?)",
            [(i.id, i.hash, i.parent, i.mutation, i.born, int(i.reused), real(i.fitness))
             for i in individuals])

    def snapshot(self, evaluated: int, population: list[int], rng: dict, counters: dict,
                 best: float, individuals: list) -> None:
        """New individuals and the search state after ``evaluated`` results, in one transaction."""
        with self._write():
            self._individuals(individuals)
            self.db.execute("INSERT OR REPLACE INTO snapshots VALUES (?,?,?,?,?,?)",
                            (evaluated, dumps(population), dumps(rng), dumps(counters),
                             real(best), time.time()))

    # ---------------------------------------------------------- reading
    def cached(self, program_hash: str, stage: str) -> Evaluation | None:
        """A complete evaluation of this program on this stage, if the run has one."""
        row = self.db.execute("SELECT evaluation FROM evaluations WHERE hash=? AND stage=? "
                              "AND complete=1 AND status='ok' ORDER BY seq LIMIT 1",
                              (program_hash, stage)).fetchone()
        return evaluation_from(row[0]) if row else None

    def snapshot_at(self, evaluated: int) -> tuple[list[int], dict] | None:
        row = self.db.execute("SELECT population, rng FROM snapshots WHERE evaluated=?",
                              (evaluated,)).fetchone()
        return (json.loads(row[0]), json.loads(row[1])) if row else None

    def programs(self) -> dict[str, tuple[str, str | None]]:
        """Every program met: ``hash -> (source, behavioural fingerprint or None)``."""
        return {h: (src, fp) for h, src, fp in
                self.db.execute("SELECT hash, source, fingerprint FROM programs")}

    def evaluations(self) -> list[tuple[int, int, str, str, float | None, bool, str, float,
                                        Evaluation, float]]:
        """A search's recorded evaluations by ``seq``: ``(seq, key, hash, stage, fitness
        (None: NaN), complete, status, seconds, evaluation, finished)`` (``finished``: the
        time it was recorded)."""
        return [(*row[:5], bool(row[5]), row[6], row[7], evaluation_from(row[8]), row[9])
                for row in self.db.execute(
                    "SELECT seq, key, hash, stage, fitness, complete, status, seconds, "
                    "evaluation, finished FROM evaluations ORDER BY seq")]

    def individuals(self) -> list[tuple[int, str, int | None, str, int, bool, float | None]]:
        """A search's individuals by id: ``(id, hash, parent, mutation, born, reused,
        fitness)``."""
        return [(*row[:5], bool(row[5]), row[6]) for row in
                self.db.execute("SELECT id, hash, parent, mutation, born, reused, fitness "
                                "FROM individuals ORDER BY id")]

    def snapshots(self) -> list[tuple[int, list[int], dict]]:
        """A search's state after each consumed result: ``(evaluated, population ids,
        counters)``, in order."""
        return [(n, json.loads(pop), json.loads(counters)) for n, pop, counters in
                self.db.execute("SELECT evaluated, population, counters FROM snapshots "
                                "ORDER BY evaluated")]

    def events(self) -> list[tuple[float, str, dict]]:
        """Every event, oldest first: ``(time, kind, data)``."""
        return [(t, kind, json.loads(data)) for t, kind, data in
                self.db.execute("SELECT time, kind, data FROM events ORDER BY id")]

    def result(self) -> dict | None:
        """The finished run's :data:`RESULT`, or None (not finished, missing, unreadable)."""
        if self.meta("status") != "finished":
            return None
        try:
            return json.loads((self.path / RESULT).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def rows(self, sql: str, *args: Any) -> Iterator[tuple]:
        """Any query's rows (for tests and one-off analyses; the package reads through the
        functions above)."""
        return iter(self.db.execute(sql, args).fetchall())

    def count(self, table: str) -> int:
        return self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
