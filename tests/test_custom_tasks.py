"""A user's own task: ModelTask against a plain PyTorch loop, references, errors, bench, search.

The worked example of docs/TASKS.md (``docs/examples/my_tasks.py``) is the task
benchmarked here, from a copy in the working directory, exactly as the doc runs it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from optforge import tasks
from optforge.cli import app
from optforge.tasks.base import INIT, Batches, mix
from optforge.train import train

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "my_tasks.py"
REF = f"{EXAMPLE}:my_task"

BROKEN = '''
import torch
from torch import nn
from optforge.tasks import ModelTask


def exploding_loss(out, y):
    if y.shape[0] < 1000:  # training batches
        raise ValueError("my loss is broken")
    return nn.functional.cross_entropy(out, y)


def data():
    x = torch.randn(1200, 2, generator=torch.Generator().manual_seed(0))
    return x[:1000], (x[:1000, 0] > 0).long(), x[1000:], (x[1000:, 0] > 0).long()


broken = ModelTask("broken", model=lambda: nn.Linear(2, 2), data=data, loss=exploding_loss,
                   steps=20, batch=16)
'''


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A working directory holding the doc's example and a broken task."""
    shutil.copy(EXAMPLE, tmp_path / "my_tasks.py")
    (tmp_path / "broken_tasks.py").write_text(BROKEN)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def bn_model():
    return torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.BatchNorm1d(16),
                               torch.nn.ReLU(), torch.nn.Linear(16, 2))


@pytest.mark.parametrize("model, replicas, mode", [
    (None, "vmap", "vmap"),
    (None, "loop", "loop"),
    (None, "auto", "vmap"),
    (bn_model, "auto", "loop"),  # BatchNorm updates its buffers: vmap fails, the loop runs
])
def test_model_task_trains_as_a_plain_pytorch_loop(model, replicas, mode):
    """Replica k of a ModelTask is the model trained alone by torch.optim.AdamW."""
    example = tasks.get(REF).inner
    inner = tasks.ModelTask("t", model=model or example.model, data=example.data,
                            loss=example.loss_fn, metric="accuracy", metric_fn=tasks.accuracy,
                            higher_is_better=True, batch=32, replicas=replicas)
    steps, lr, wd, seeds = 25, 1e-2, 0.01, [3, 4]
    inst = inner.instantiate("tiny", seeds, dtype=torch.float64)
    inst.loss(0)
    assert inst.mode == mode
    assert (inst.fallback is not None) == (mode == "loop" and replicas == "auto")
    res = train(inner, "adamw", seeds=seeds, steps=steps, schedule="constant", warmup=0,
                hparams={"lr": lr, "wd": wd}, dtype=torch.float64, eval_every=steps)
    x, y, vx, vy = (t.double() if t.is_floating_point() else t for t in inner.tensors())
    for k, seed in enumerate(seeds):
        torch.manual_seed(mix(seed, INIT))
        model = inner.model().double()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
        batches = Batches([seed], len(y), 32, "cpu")
        for t in range(steps):
            i = batches(t)[0]
            loss = inner.loss_fn(model(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            model.eval()
            out = model(vx)
        assert res.final_loss[k] == pytest.approx(inner.loss_fn(out, vy).item(), rel=1e-9)
        assert res.final_metric[k] == pytest.approx(tasks.accuracy(out, vy).item(), abs=1e-12)


def test_forcing_vmap_on_a_model_that_cannot_is_a_task_error():
    inner = tasks.ModelTask("t", model=bn_model, data=tasks.get(REF).inner.data,
                            loss=torch.nn.functional.cross_entropy, replicas="vmap", batch=8)
    res = train(f"{EXAMPLE}:my_task", "adamw", seeds=[0], steps=2)  # the example is fine
    assert res.error is None
    res = train(inner, "adamw", seeds=[0, 1], steps=2)
    assert res.status == ["error", "error"] and "RuntimeError" in res.error


def test_references_resolve_by_file_and_by_module(user_dir, monkeypatch):
    by_file = tasks.get("my_tasks.py:my_task")
    assert by_file.name == "my_tasks.py:my_task" and by_file.metric == "accuracy"
    assert by_file.higher_is_better and by_file.spec("tiny").steps == 300
    monkeypatch.syspath_prepend(str(user_dir))
    by_module = tasks.get("my_tasks:tiny_task")  # a function returning the task
    assert by_module.name == "my_tasks:tiny_task" and by_module.spec("small").steps == 60


@pytest.mark.parametrize("ref, match", [
    ("nowhere.py:my_task", "does not exist"),
    ("my_tasks.py:missing", "has no 'missing'; it defines .*my_task"),
    ("my_tasks.py:model", "not an optforge Task"),
    ("no_such_package.mod:task", "ModuleNotFoundError"),
    ("my_tasks.py:", "not of the form"),
])
def test_bad_references_are_precise_errors(user_dir, ref, match):
    with pytest.raises(KeyError, match=match):
        tasks.get(ref)


def test_an_import_error_shows_the_users_traceback(user_dir):
    (user_dir / "typo.py").write_text("import torch\n\n\ndef f():\n    pass\n\n\n1 / 0\n")
    with pytest.raises(KeyError) as err:
        tasks.get("typo.py:f")
    text = str(err.value)
    assert "ZeroDivisionError" in text and re.search(r'typo\.py", line 8', text)


def test_bench_runs_the_docs_example_and_a_broken_task_is_a_failed_row(user_dir):
    out = user_dir / "bench"
    res = CliRunner().invoke(app, [
        "bench", "--optimizers", "adamw,lion",
        "--tasks", "my_tasks.py:my_task,broken_tasks.py:broken", "--trials", "2", "--seeds",
        "2", "--steps", "40", "--evals", "4", "--batch", "2", "--no-plots", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    rows = {(e["task"], e["optimizer"]): e for e in data["entries"]}
    for opt in ("adamw", "lion"):
        ok = rows["my_tasks.py:my_task", opt]
        assert ok["status"] == "ok" and 0.5 < ok["final_metric"]["mean"] <= 1.0
        bad = rows["broken_tasks.py:broken", opt]
        assert bad["status"] == "failed"
        assert "ValueError: my loss is broken" in bad["reason"]
        assert re.search(r'broken_tasks\.py", line 9, in exploding_loss', bad["reason"])
    assert "my_tasks.py:my_task" in res.output


def test_bench_refuses_a_bad_reference_before_it_starts(user_dir):
    res = CliRunner().invoke(app, ["bench", "--optimizers", "adamw", "--tasks",
                                   "my_tasks.py:nope", "--out", str(user_dir / "b")])
    assert res.exit_code == 2 and "has no 'nope'" in res.output
    assert "Traceback" not in res.output and not (user_dir / "b").exists()


def test_search_tiers_and_held_out_stages_take_user_tasks(user_dir):
    from optforge.search import Search, SearchConfig

    cfg = SearchConfig(seed=0, init=["adamw"], evaluations=4, population=3, tournament=2,
                       tiers=["tiny:my_tasks.py:tiny_task@20"],
                       heldout="tiny:my_tasks.py:my_task@20", promote_threshold=-10.0,
                       promote_max=1, simplify_top=1, simplify_evaluations=2,
                       hurdle_warmup=100)
    cfg.check_tasks()
    result = Search(cfg).run()
    assert result.best is not None and result.best.fitness > -float("inf")
    held = result.winners[0].heldout
    assert held is not None and held.error is None
    assert set(held.scores) == {"my_tasks.py:my_task"}


def test_docs_show_the_example_that_the_tests_run():
    doc = (ROOT / "docs" / "TASKS.md").read_text()
    assert EXAMPLE.read_text().rstrip("\n") in doc
    assert "optforge bench --optimizers adamw,lion --tasks my_tasks.py:my_task" in doc
