"""The journal: every finished piece of a run's work under its request number, replayed on resume.

A search and a benchmark are both deterministic functions of their settings and
of the results of the requests they make, numbered ``seq = 0, 1, 2, ...`` in the
order they make them (a search's jobs, a benchmark's batched training runs).
So one mechanism makes both resumable:

* :meth:`Journal.record` writes a result the moment it exists, in one
  transaction: a SIGKILL loses no finished work, and ``seq`` being the table's
  primary key, nothing is recorded twice;
* on resume the run starts again from the top and asks :meth:`Journal.replay`
  before each request: the stored row if there is one, after checking that the
  stored request is the same one (else :class:`ReplayError`, naming what
  differs); ``None`` (compute it) otherwise.

A request is a few columns (:attr:`Layout.request`), a result the rest; columns
in :attr:`Layout.json` hold JSON text and are compared and returned parsed. The
two layouts are the search's ``evaluations`` and the benchmark's ``units``
tables (docs/RUNS.md), unchanged from format ``optforge-run-1``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ..evaluation import Evaluation, Job, Outcome
from .db import JOURNALS, RunStore, StoreError, dumps, real


class ReplayError(RuntimeError):
    """The stored run does not match what the run asks for now (code or settings changed)."""


@dataclass(frozen=True)
class Layout:
    """A journal's table: the request columns (checked on replay) and the result columns."""

    table: str
    request: tuple[str, ...]
    result: tuple[str, ...]
    json: frozenset[str]
    noun: str  # what one row is, for messages: "submission", "training run"
    describe: Callable[[dict], str]  # a request in words

    @property
    def columns(self) -> tuple[str, ...]:
        return ("seq", *self.request, *self.result, "finished")


SEARCH = Layout(
    JOURNALS["search"], ("key", "hash", "stage", "thresholds"),
    ("fitness", "complete", "status", "error", "seconds", "worker", "attempts", "source",
     "evaluation"),
    frozenset({"thresholds", "evaluation"}), "submission",
    lambda r: f"job {r['key']} ({r['stage']}, program {r['hash'][:12]})")
"""A search's evaluations: request = job key, program hash, stage, hurdle thresholds."""

BENCH = Layout(
    JOURNALS["bench"], ("task", "optimizer", "unit", "request"), ("status", "result", "seconds"),
    frozenset({"request", "result"}), "training run",
    lambda r: f"{r['unit']} of {r['optimizer']} on {r['task']}")
"""A benchmark's training runs: request = task, optimizer, unit name and what was trained
(steps, configurations, seeds, program hash)."""

LAYOUTS = {"search": SEARCH, "bench": BENCH}


class Journal:
    """The journal of ``store`` in ``layout`` (by default the one of the store's kind)."""

    def __init__(self, store: RunStore, layout: Layout | None = None):
        if layout is None:
            if store.kind not in LAYOUTS:
                raise StoreError(f"{store.path} is a {store.kind} run, which keeps no journal")
            layout = LAYOUTS[store.kind]
        self.store, self.layout = store, layout

    def __len__(self) -> int:
        return self.store.count(self.layout.table)

    def get(self, seq: int) -> dict | None:
        """Row ``seq`` as a dictionary (JSON columns parsed), or None."""
        cols = self.layout.columns
        row = self.store.db.execute(f"SELECT {', '.join(cols)} FROM {self.layout.table} "  # noqa: S608
                                    "WHERE seq=?", (seq,)).fetchone()
        if row is None:
            return None
        return {c: json.loads(v) if c in self.layout.json else v
                for c, v in zip(cols, row, strict=True)}

    def replay(self, seq: int, request: dict[str, Any]) -> dict | None:
        """The stored row ``seq`` if its request equals ``request`` (None if there is none);
        :class:`ReplayError` if it holds another request."""
        row = self.get(seq)
        if row is None:
            return None
        differs = [c for c in self.layout.request if _canon(row[c]) != _canon(request[c])]
        if differs:
            lay = self.layout
            raise ReplayError(
                f"{self.store.path}: {lay.noun} {seq} was {lay.describe(row)} in the stored "
                f"run but is {lay.describe(request)} now (differing: "
                f"{_keys(differs, row, request)}); the code or the settings changed")
        return row

    def record(self, seq: int, request: dict[str, Any], result: dict[str, Any],
               program=None) -> None:
        """Row ``seq`` (``program``: a :class:`~optforge.lang.ir.Program` to keep in
        ``programs`` with it), in one transaction."""
        cols = self.layout.columns
        values = {"seq": seq, **request, **result, "finished": time.time()}
        with self.store._write():
            if program is not None:
                self.store.db.execute("INSERT OR IGNORE INTO programs VALUES (?, ?, ?)",
                                      (program.hash, str(program), None))
            self.store.db.execute(
                f"INSERT INTO {self.layout.table} ({', '.join(cols)}) "  # noqa: S608
                f"VALUES ({', '.join('?' * len(cols))})",
                [dumps(values[c]) if c in self.layout.json else values[c] for c in cols])


    # ------------------------------------------------------------ the search's rows
    def record_outcome(self, seq: int, outcome: Outcome, source: str = "run") -> None:
        """A search's finished job (``source``: ``run``, or ``cache:DIR`` for an answer
        taken from another run)."""
        ev = outcome.evaluation
        self.record(seq, _job_request(outcome.job), {
            "fitness": real(ev.fitness), "complete": int(ev.complete), "status": outcome.status,
            "error": ev.error, "seconds": outcome.seconds, "worker": outcome.worker,
            "attempts": outcome.attempts, "source": source, "evaluation": asdict(ev)},
            program=outcome.job.program)

    def replay_job(self, seq: int, job: Job) -> Evaluation | None:
        """The stored evaluation of submission ``seq`` if it was ``job`` (see :meth:`replay`)."""
        row = self.replay(seq, _job_request(job))
        return None if row is None else Evaluation(**row["evaluation"])


def _job_request(job: Job) -> dict:
    return {"key": job.key, "hash": job.program.hash, "stage": job.stage,
            "thresholds": dict(job.thresholds)}


def _canon(value: Any) -> str:
    """A value as comparable JSON text (NaN equal to NaN, key order irrelevant)."""
    return dumps(value)


def _keys(columns: list[str], was: dict, now: dict) -> str:
    """The differing columns; for a JSON object, its differing keys (``request.seeds``)."""
    out = []
    for c in columns:
        a, b = was[c], now[c]
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{c}.{k}" for k in sorted(set(a) | set(b))
                    if _canon(a.get(k)) != _canon(b.get(k))]
        else:
            out.append(c)
    return ", ".join(out)
