"""Summaries of run directories for ``optforge runs list`` and ``optforge runs show``."""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from .db import FILE, RunStore, StoreError


@dataclass
class RunSummary:
    path: Path
    kind: str
    status: str
    created: float
    evaluations: int
    statuses: dict[str, int]
    seconds: float  # evaluation time, summed over workers
    wall: float  # first event to last event
    store_seconds: float | None
    best: list[dict] = field(default_factory=list)  # best programs, fittest first
    counters: dict = field(default_factory=dict)
    resumes: int = 0
    bench: dict | None = None  # bench runs: optimizers, tasks, units, scores (store.bench)
    stage: str | None = None  # where the run is (or stopped): search phase, bench unit
    plan: list[dict] = field(default_factory=list)  # search runs: cost per stage (search.plan)


def summarize(path: str | Path, top: int = 5) -> RunSummary:
    with RunStore.open(path, readonly=True) as store:
        statuses = dict(store.rows("SELECT status, COUNT(*) FROM evaluations GROUP BY status "
                                   "ORDER BY status"))
        (seconds,) = next(store.rows("SELECT COALESCE(SUM(seconds), 0) FROM evaluations"))
        t0, t1 = next(store.rows("SELECT MIN(time), MAX(time) FROM events"))
        resumes = next(store.rows("SELECT COUNT(*) FROM events WHERE kind='resume'"))[0]
        finish = list(store.rows("SELECT data FROM events WHERE kind='finish' ORDER BY id DESC "
                                 "LIMIT 1"))
        first = store.rows("SELECT stage FROM evaluations ORDER BY seq LIMIT 1")
        stage = next(first, (None,))[0]
        best = [{"fitness": f, "stage": s, "hash": h, "source": src, "evaluations": n}
                for f, s, h, src, n in store.rows(
                    "SELECT MAX(e.fitness), e.stage, e.hash, p.source, COUNT(*) "
                    "FROM evaluations e JOIN programs p ON p.hash = e.hash "
                    "WHERE e.complete = 1 AND e.status = 'ok' AND e.fitness IS NOT NULL "
                    "AND e.stage = ? GROUP BY e.hash ORDER BY MAX(e.fitness) DESC, MIN(e.seq) "
                    "LIMIT ?", stage, top)]
        if store.kind == "bench":
            from .bench import summary

            b = summary(store)
            return RunSummary(Path(path), store.kind, store.meta("status"),
                              float(store.meta("created", 0.0)), b["units"], b["statuses"],
                              b["seconds"], (t1 - t0) if t0 is not None else 0.0,
                              json.loads(finish[0][0]).get("store_seconds") if finish else None,
                              resumes=resumes, bench=b, stage=b["stage"])
        return RunSummary(Path(path), store.kind, store.meta("status"),
                          float(store.meta("created", 0.0)), store.count("evaluations"),
                          statuses, float(seconds), (t1 - t0) if t0 is not None else 0.0,
                          json.loads(finish[0][0]).get("store_seconds") if finish else None,
                          [b for b in best if b["fitness"] is not None
                           and math.isfinite(b["fitness"])],
                          store.meta("counters", {}) or {}, resumes,
                          stage=store.meta("phase") or ("evolution" if t0 is not None else None),
                          plan=store.meta("plan", []) or [])


def find_runs(root: str | Path) -> list[Path]:
    """Run directories at ``root`` or one level below it, sorted by name."""
    root = Path(root)
    if (root / FILE).is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / FILE).is_file())


def list_runs(root: str | Path) -> list[RunSummary | tuple[Path, str]]:
    """A summary per run under ``root``; unreadable ones (corrupt, foreign, no permission)
    as ``(path, reason)``: one bad run never hides the others."""
    out: list[RunSummary | tuple[Path, str]] = []
    for p in find_runs(root):
        try:
            out.append(summarize(p, top=1))
        except StoreError as err:
            out.append((p, str(err)))
        except (sqlite3.Error, OSError, ValueError, KeyError) as err:  # a store read half-way
            out.append((p, f"{type(err).__name__}: {err}"))
    return out
