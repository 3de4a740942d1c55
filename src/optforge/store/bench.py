"""A bench run in the run store: one row per finished training run ("unit"), and its summary.

A bench run (``kind = "bench"``) has the common tables (``meta``, ``events``)
and its own:

* ``units(seq, task, optimizer, unit, request, status, result, seconds,
  finished)``: one row per finished batched training run, ``seq`` its number in
  the benchmark's fixed order (the primary key: none is recorded twice).
  ``unit`` names it (``tune/B``: tuning batch ``B``; ``final``: the final
  seeds; ``budget/S``: the baseline trained for ``S`` steps); ``request`` (JSON)
  is what was trained (steps, configurations, seeds, program hash), checked on
  replay; ``result`` (JSON) is the run's outcome as the benchmark uses it (the
  validation curves, statuses, divergence steps, error; not the per-step
  training loss) plus the ``on_eval`` calls the pruner saw; ``status`` is
  ``ok``, ``stopped`` (pruned early by ``on_eval``), ``error`` (the program
  raised inside the trainer) or ``raised`` (the training call itself raised).

``meta`` adds ``candidates`` (label, origin, program text, search space of each
optimizer, as resolved when the run was created: a resumed run does not read
program files again), ``planned`` (training runs the benchmark needs at most),
and when finished ``scores`` and ``entries`` (task, optimizer, status, reason).
"""

from __future__ import annotations

from .db import RunStore

KIND = "bench"

SCHEMA = """
CREATE TABLE units (seq INTEGER PRIMARY KEY, task TEXT NOT NULL, optimizer TEXT NOT NULL,
    unit TEXT NOT NULL, request TEXT NOT NULL, status TEXT NOT NULL, result TEXT NOT NULL,
    seconds REAL NOT NULL, finished REAL NOT NULL);
"""
"""The ``units`` table, written and replayed through the journal
(:data:`optforge.store.journal.BENCH`)."""


def summary(store: RunStore) -> dict:
    """What ``optforge runs list/show`` print for a bench run."""
    config = store.config
    per_entry = {(t, o): (n, s) for t, o, n, s in store.rows(
        "SELECT task, optimizer, COUNT(*), SUM(seconds) FROM units GROUP BY task, optimizer")}
    statuses = dict(store.rows("SELECT status, COUNT(*) FROM units GROUP BY status "
                               "ORDER BY status"))
    (seconds,) = next(store.rows("SELECT COALESCE(SUM(seconds), 0) FROM units"))
    cands = store.meta("candidates", []) or []
    last = store.db.execute("SELECT task, optimizer, unit FROM units ORDER BY seq DESC "
                            "LIMIT 1").fetchone()
    return {
        "stage": None if last is None else f"{last[0]}: {last[1]} {last[2]} (last unit done)",
        "planned_base": store.meta("planned_base"),
        "optimizers": [c["label"] for c in cands] or list(config.get("optimizers", [])),
        "baseline": cands[0]["label"] if cands else config.get("baseline"),
        "tasks": list(config.get("tasks", [])),
        "settings": {k: config.get(k) for k in ("tier", "steps", "trials", "batch", "seeds",
                                                "sampler", "pruner", "seed")},
        "units": sum(statuses.values()),
        "planned": store.meta("planned"),
        "statuses": statuses,
        "seconds": float(seconds),
        "per_entry": {f"{t}/{o}": {"units": n, "seconds": s} for (t, o), (n, s)
                      in sorted(per_entry.items())},
        "scores": store.meta("scores"),
        "entries": store.meta("entries"),
    }
