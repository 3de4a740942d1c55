"""On a GPU: the zoo against its references, every task's training, and a search through
the process pool, run on ``cuda`` (skipped where torch sees no CUDA device; CI has none,
so these run where one is lent: docs/GPU.md).

* Every (optimizer, setting) row of the zoo's verification, with the program and its
  reference both on the GPU in float64, within the row's CPU tolerance.
* Every task trains on the GPU as on the CPU: 20 AdamW steps in float64 from the same seeds
  give the same validation losses (rtol 1e-6), so data, initialisation and noise are drawn
  device-independently and the replicated layers compute the same functions there.
* ``compile=True`` on the GPU runs (CUDA buckets fall back to the eager step) and gives the
  eager result.
* ``optforge search --device cuda --backend process``: spawned workers (``start_method``)
  finish every evaluation.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import torch

from optforge import tasks, zoo
from optforge.train import OK, train
from optforge.zoo import verify

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CASES = [(n, i) for n in zoo.names() for i in range(len(zoo.entry(n).settings))]


@pytest.mark.parametrize(("name", "index"), CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_zoo_matches_reference_on_cuda(name, index):
    row = verify.check(name, zoo.entry(name).settings[index], device="cuda")
    assert row.deviation <= row.tolerance, (
        f"{name} {row.setting} on cuda: deviation {row.deviation:.3g} > {row.tolerance:g}")
    assert row.moved > 1e-2


def _adamw(task: str, **kw):
    return train(task, "adamw", "tiny", seeds=[0, 1], hparams={"lr": 1e-3}, steps=20,
                 eval_every=10, dtype=torch.float64, **kw)


@pytest.mark.parametrize("task", tasks.names())
def test_task_trains_on_cuda_as_on_cpu(task):
    cpu, gpu = _adamw(task), _adamw(task, device="cuda")
    assert list(gpu.status) == [OK, OK], gpu.error
    np.testing.assert_allclose(gpu.eval_loss, cpu.eval_loss, rtol=1e-6)


@pytest.mark.parametrize("task", ["digits_mlp", "charlm"])
def test_compiled_step_on_cuda_equals_eager(task):
    eager, compiled = _adamw(task, device="cuda"), _adamw(task, device="cuda", compile=True)
    np.testing.assert_allclose(compiled.eval_loss, eager.eval_loss, rtol=1e-12)


def test_search_on_cuda_through_the_process_pool(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "optforge.cli", "search", "--device", "cuda",
           "--backend", "process", "--workers", "2", "--init", "adamw", "--init", "lion",
           "--evaluations", "8", "--population", "4", "--tournament", "2",
           "--tiers", "tiny:digits_mlp,quadratic@40", "--heldout", "tiny:digits_logreg@40",
           "--simplify-top", "0", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["config"]["device"] == "cuda"
    assert result["counters"]["evaluated"] >= 8
    with sqlite3.connect(out / "run.sqlite") as db:
        errors = db.execute("SELECT DISTINCT error FROM evaluations WHERE error IS NOT NULL")
        assert result["counters"]["errors"] == 0, [e for (e,) in errors][:3]
