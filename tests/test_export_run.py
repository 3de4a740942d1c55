"""``optforge export RUN_DIR --rank N``: the hall of fame's program N of a real tiny search,
as a file that steps like ProgramOptimizer running that program."""

from __future__ import annotations

import ast
import importlib.util
import sqlite3
import sys

import pytest
import torch
from searchrun import SELECTION, result_json, tiny_search

from optforge.export import ExportError, export, resolve
from optforge.lang.ir import Program
from optforge.optim import ProgramOptimizer
from optforge.report.data import recommended_lr
from optforge.store.db import evaluation_from

TOLERANCE = 1e-12  # as tests/test_export.py: float64, rounding only


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_search(tmp_path_factory.mktemp("search"))


@pytest.fixture(scope="module")
def selection_run(tmp_path_factory):
    return tiny_search(tmp_path_factory.mktemp("selection"), selection=SELECTION)


def load(path, name):
    spec = importlib.util.spec_from_file_location(f"exported_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, name)


def best_lrs(run, entry):
    """Per stage, the best rates of the candidate's complete evaluations: its first-tier
    evaluation as the search gave it (result.json), then its jobs by id or program (SQL)."""
    out = {"tier0": entry["evaluation"]["best_lr"]}
    db = sqlite3.connect(run / "run.sqlite")
    for stage, text in db.execute("SELECT stage, evaluation FROM evaluations WHERE (key=? OR "
                                  "hash=?) AND complete=1 AND status='ok' ORDER BY seq",
                                  (entry["id"], entry["hash"])):
        out.setdefault(stage, evaluation_from(text).best_lr)
    return out


@pytest.mark.parametrize("suites", ["tiers", "selection"])
@pytest.mark.parametrize("rank", [1, 2])
def test_exported_rank_steps_like_program_optimizer(request, tmp_path, rank, suites):
    run = request.getfixturevalue("run" if suites == "tiers" else "selection_run")
    entry = result_json(run)["hall_of_fame"][rank - 1]  # the search's own ranking
    out = export(str(run), tmp_path / f"rank{rank}.py", "Found", rank=rank)
    cls = load(out, "Found")
    rates = best_lrs(run, entry)
    tiers = sorted((s for s in rates if s.startswith("tier")), key=lambda s: int(s[4:]))
    # the costliest tier reached and the selection suite (validation), never the test suite
    safe = [*rates[tiers[-1]].values(), *rates.get("selection", {}).values()]
    assert cls([torch.nn.Parameter(torch.ones(2))]).defaults["lr"] == min(safe)
    program = Program.parse(entry["source"])
    gen = torch.Generator().manual_seed(rank)
    shapes = [(4, 3), (5,), (2, 3, 2)]
    init = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    grads = [[torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
             for _ in range(20)]
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    ref = [torch.nn.Parameter(t.clone()) for t in init]
    a, b = cls(ours, lr=0.01), ProgramOptimizer(ref, program, lr=0.01)
    for step in grads:
        for p, q, g in zip(ours, ref, step, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        a.step()
        b.step()
        for p, q in zip(ours, ref, strict=True):
            assert float((p - q).detach().abs().max()) <= TOLERANCE
    assert any(float((p.detach() - t).abs().max()) > 1e-3 for p, t in zip(ours, init, strict=True))
    doc = " ".join(ast.get_docstring(ast.parse(out.read_text())).split())
    assert f"run {run}, rank {rank} in its hall of fame, fitness {entry['fitness']:.6g}" in doc
    assert "Best learning rates on the search's grid" in doc
    # every stage's rates with its suite, in funnel order: tiers, selection, held out
    specs = {**{f"tier{i}": t for i, t in enumerate(result_json(run)["config"]["tiers"])},
             "selection": SELECTION, "heldout": result_json(run)["config"]["heldout"]}
    listed = [doc.index(f"{s} ({specs[s]}): ") for s in ("tier0", "tier1", "selection",
                                                          "heldout") if s in rates]
    assert len(listed) == len(rates) and listed == sorted(listed)
    assert (suites == "selection" and "selection" in rates) == ("on tier1 and selection" in doc)


# (stage, best rates) in funnel order -> the recommended lr: the smallest over the costliest
# tier reached and the selection suite, never tier0 once a later tier ran nor the test suite
RATES = [
    ([("tier0", {"quadratic": 4.64}), ("tier1", {"digits_logreg": 0.1}),
      ("selection", {"charlm": 0.5, "quadratic": 1.0}), ("heldout", {"digits_mlp": 0.001})], 0.1),
    ([("tier0", {"quadratic": 4.64}), ("tier1", {"digits_logreg": 0.1}),
      ("selection", {"charlm": 0.01, "quadratic": 1.0})], 0.01),
    ([("tier0", {"quadratic": 4.64, "digits_mlp": 0.2}), ("tier2", {"digits_mlp": 0.3}),
      ("heldout", {"digits_ae": 0.01})], 0.3),
    ([("tier0", {"quadratic": 4.64}), ("heldout", {"digits_ae": 0.01})], 4.64),
    ([("heldout", {"digits_ae": 0.01})], None),
    ([], None),
]


@pytest.mark.parametrize("rates,lr", RATES)
def test_recommended_lr_rule(rates, lr):
    assert recommended_lr(rates) == lr


def test_errors(run, tmp_path):
    n = len(result_json(run)["hall_of_fame"])
    with pytest.raises(ExportError, match=f"rank {n + 1} is out of range.*ranks 1 to {n}"):
        resolve(str(run), n + 1)
    with pytest.raises(ExportError, match="positive integer"):
        resolve(str(run), 0)
    with pytest.raises(ExportError, match="not a search run directory"):
        resolve(str(tmp_path))
    with pytest.raises(ExportError, match="--rank applies to a search run directory"):
        resolve("adamw", 1)


def test_unfinished_run(tmp_path):
    run = tiny_search(tmp_path, stop_after=4)
    program, origin = resolve(str(run))
    assert origin.rank == 1 and "unfinished" in origin.notes
    assert program.name == "discovered"


def test_cli(run, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from optforge.cli import app

    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["export", str(run), "--rank", "2"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "discovered_rank2_optimizer.py").is_file()
    assert "class DiscoveredRank2" in done.output
    done = CliRunner().invoke(app, ["export", str(run), "--rank", "99"])
    assert done.exit_code == 2 and "out of range" in done.output
