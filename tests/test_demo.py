"""``optforge demo --quick``: the main job end to end (seconds): search into a run
directory, bench against AdamW and Lion, export from the run, report."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import sys

import pytest
import torch

from optforge.cli.demo import MARKER, QUICK, prepare, run_demo
from optforge.lang.ir import Program


def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    summary = run_demo(out, QUICK)
    run = out / "run"
    db = sqlite3.connect(run / "run.sqlite")
    assert db.execute("SELECT value FROM meta WHERE key='status'").fetchone() == ("finished",)
    assert db.execute("SELECT COUNT(*) FROM evaluations WHERE stage='tier0' AND key >= 0"
                      ).fetchone() == (QUICK.evaluations,)
    # the benchmarked and exported program is rank 1 of the search's hall of fame
    best = json.loads((run / "result.json").read_text())["hall_of_fame"][0]
    found = Program.parse((out / "discovered.py").read_text())
    assert found.hash == Program.parse(best["source"]).hash
    assert summary["search_fitness"] == best["fitness"]
    bench = json.loads((out / "bench" / "results.json").read_text())
    assert {(e["optimizer"], e["task"]) for e in bench["entries"]} == {
        (o, t) for o in ("adamw", "lion", "discovered") for t in QUICK.heldout_tasks}
    assert [r["task"] for r in summary["comparison"]] == list(QUICK.heldout_tasks)
    text = (out / "report" / "report.html").read_text()
    assert "<h2>Benchmark</h2>" in text and "Unfinished" not in text
    spec = importlib.util.spec_from_file_location("demo_exported", out / "discovered_optimizer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    p = torch.nn.Parameter(torch.ones(3))
    opt = module.Discovered([p])
    p.grad = torch.tensor([1.0, -2.0, 0.5])
    opt.step()
    assert torch.isfinite(p).all() and not torch.equal(p.detach(), torch.ones(3))
    assert summary["files"]["report"] == str(out / "report" / "report.html")


def test_prepare_replaces_only_a_previous_demo(tmp_path):
    out = tmp_path / "demo"
    prepare(out)
    (out / "run").mkdir()
    (out / "run" / "run.sqlite").write_text("old")
    (out / "discovered.py").write_text("old")
    (out / "mine.txt").write_text("kept")
    prepare(out)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "mine.txt"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("1,2")
    with pytest.raises(ValueError, match="not a demo output directory"):
        prepare(other)
    assert (other / "data.csv").read_text() == "1,2"
