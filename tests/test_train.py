"""The trainer: schedules, clipping and curves against plain torch loops,
divergence isolation, errors as values, determinism."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from optforge import tasks
from optforge.tasks.base import Spec, Task, TaskInstance
from optforge.train import (
    DIVERGED,
    ERROR,
    OK,
    TrainResult,
    clip_per_replica,
    multipliers,
    replica_hparams,
    train,
)
from optforge.train.heap import keep_heap

SGD = "def sgd(w, g, lr):\n    update = lr * g\n    return update\n"
# scales the update by sqrt(c): a replica with c < 0 gets NaN weights
SQRT_SGD = "def sqrt_sgd(w, g, lr, c=1.0):\n    update = lr * sqrt(c) * g\n    return update\n"


# ------------------------------------------------------------------ schedules

@pytest.mark.parametrize("kind,expect", [
    # warmup 4 of 12 steps: t/4 for t <= 4, then progress p = (t - 4) / 8
    ("constant", [0.25, 0.5, 0.75, 1.0] + [1.0] * 8),
    ("cosine", [0.25, 0.5, 0.75, 1.0]
     + [0.5 * (1 + math.cos(math.pi * i / 8)) for i in range(1, 9)]),
    ("linear", [0.25, 0.5, 0.75, 1.0] + [1 - i / 8 for i in range(1, 9)]),
])
def test_schedule_values(kind, expect):
    np.testing.assert_allclose(multipliers(kind, 12, warmup=4), expect, atol=1e-12)


def test_schedule_fractional_warmup_and_final():
    m = multipliers("cosine", 100, warmup=0.1, final=0.1)
    assert m[9] == 1.0 and m[8] == 0.9 and m[-1] == pytest.approx(0.1)
    assert multipliers("linear", 5)[0] == pytest.approx(0.8)  # no warmup


@pytest.mark.parametrize("args,match", [
    (("step", 10), "unknown schedule"), (("cosine", 0), "positive"),
    (("cosine", 10, 11), "exceeds"), (("cosine", 10, 1.5), "below 1"),
    (("cosine", 10, -1), "non-negative"),
])
def test_schedule_errors(args, match):
    with pytest.raises(ValueError, match=match):
        multipliers(*args)


# ------------------------------------------------------------------ clipping, hparams

def test_clip_per_replica_matches_clip_grad_norm_per_replica():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, 5, generator=g, dtype=torch.float64),
             torch.randn(3, 7, generator=g, dtype=torch.float64)]
    grads[0][1] *= 1e-3  # replica 1 is under the threshold: untouched
    refs = [[t[k].clone() for t in grads] for k in range(3)]
    norms = clip_per_replica(grads, 2.0)
    for k in range(3):
        params = [torch.nn.Parameter(torch.zeros_like(t)) for t in refs[k]]
        for p, t in zip(params, refs[k], strict=True):
            p.grad = t
        total = torch.nn.utils.clip_grad_norm_(params, 2.0)
        torch.testing.assert_close(norms[k], total)
        for p, t in zip(params, grads, strict=True):
            torch.testing.assert_close(t[k], p.grad)


def test_replica_hparams():
    assert replica_hparams({"lr": 0.1, "wd": [1, 2]}, 2) == {"lr": [0.1, 0.1], "wd": [1.0, 2.0]}
    assert replica_hparams(None, 3) == {"lr": [1e-3] * 3}
    for bad, match in [({"lr": [1, 2, 3]}, "3 values for 2"), ({"lr": -1}, "non-negative"),
                       ({"wd": math.nan}, "non-finite"), ({"wd": "x"}, "number")]:
        with pytest.raises(ValueError, match=match):
            replica_hparams(bad, 2)


# ------------------------------------------------------------------ against a torch loop

def _torch_adamw_run(task, seed, lr, wd, steps, schedule, warmup, clip):
    """The reference: one replica trained by torch.optim.AdamW in a hand-written loop."""
    inst = task.instantiate("tiny", [seed], dtype=torch.float64)
    opt = torch.optim.AdamW(inst.params, lr=lr, weight_decay=wd)
    mult = multipliers(schedule, steps, warmup)
    losses = []
    for t in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * mult[t]
        loss = inst.loss(t)
        losses.append(loss.item())
        opt.zero_grad()
        loss.sum().backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(inst.params, clip)
        opt.step()
    ev = inst.evaluate()
    return np.array(losses), ev["loss"].item(), ev[task.metric].item()


@pytest.mark.parametrize("schedule,clip", [("cosine", None), ("linear", 0.5)])
def test_trainer_matches_torch_adamw_loop_per_replica(schedule, clip):
    task = tasks.get("digits_mlp")
    lrs, wds, seeds, steps = [3e-3, 1e-2], [0.0, 0.1], [4, 9], 40
    res = train(task, "adamw", "tiny", seeds, {"lr": lrs, "wd": wds}, steps=steps,
                schedule=schedule, warmup=5, clip=clip, eval_every=20, dtype=torch.float64)
    assert res.status == [OK, OK] and list(res.eval_steps) == [0, 20, 40]
    for k in range(2):
        losses, vloss, metric = _torch_adamw_run(task, seeds[k], lrs[k], wds[k], steps,
                                                 schedule, 5, clip)
        np.testing.assert_allclose(res.train_loss[:, k], losses, rtol=1e-9)
        np.testing.assert_allclose(res.final_loss[k], vloss, rtol=1e-9)
        np.testing.assert_allclose(res.final_metric[k], metric, rtol=1e-12)


# ------------------------------------------------------------------ divergence

def test_exploding_replica_is_frozen_without_disturbing_others():
    # SGD on the quadratic (loss = mean over 100 coordinates): curvature 1 with lr 1000
    # multiplies that coordinate by 1 - 1000 / 100 = -9 per step
    bad = train("quadratic", SGD, seeds=[0, 1, 2], hparams={"lr": [50.0, 1000.0, 50.0]},
                steps=30, schedule="constant", warmup=0, eval_every=10)
    good = train("quadratic", SGD, seeds=[0, 1, 2], hparams={"lr": [50.0, 50.0, 50.0]},
                 steps=30, schedule="constant", warmup=0, eval_every=10)
    assert bad.status == [OK, DIVERGED, OK] and good.status == [OK] * 3
    step = bad.diverged_step[1]
    assert 1 < step < 10 and "exceeds 1000 x the initial loss" in bad.reason[1]
    assert np.isnan(bad.train_loss[step - 1:, 1]).all()
    assert np.isfinite(bad.train_loss[: step - 1, 1]).all()
    assert np.isnan(bad.final_metric[1]) and np.isnan(bad.eval_metric[1:, 1]).all()
    for k in (0, 2):  # bit-identical to a run without the diverging replica
        assert np.array_equal(bad.train_loss[:, k], good.train_loss[:, k])
        assert np.array_equal(bad.eval_metric[:, k], good.eval_metric[:, k])


def test_nan_replica_is_frozen_without_disturbing_others():
    kw = dict(steps=20, schedule="cosine", warmup=2, eval_every=5)
    bad = train("digits_mlp", SQRT_SGD, seeds=[3, 3], hparams={"lr": 0.1, "c": [1.0, -1.0]},
                **kw)
    good = train("digits_mlp", SQRT_SGD, seeds=[3, 3], hparams={"lr": 0.1, "c": [1.0, 1.0]},
                 **kw)
    assert bad.status == [OK, DIVERGED]
    assert bad.diverged_step[1] == 2 and bad.reason[1] == "training loss is nan"
    assert np.array_equal(bad.train_loss[:, 0], good.train_loss[:, 0])
    assert np.array_equal(bad.eval_loss[:, 0], good.eval_loss[:, 0])
    assert bad.reached(0.0).tolist() == [True, False]


# ------------------------------------------------------------------ errors are values

class _Broken(Task):
    """The quadratic, whose loss raises at step 3."""

    def __init__(self):
        super().__init__("broken", "raises", "loss", False,
                         {"tiny": Spec({"dim": 10}, steps=10, target=0.0)})

    def build(self, spec, seeds, device, dtype):
        inner = tasks.get("quadratic").instantiate("tiny", seeds, device, dtype)

        class Inst(TaskInstance):
            replicas, params = inner.replicas, inner.params

            def loss(self, step):
                if step == 3:
                    raise RuntimeError("boom")
                return inner.loss(step)

            def evaluate(self):
                return inner.evaluate()

        return Inst()


def test_runtime_failure_is_an_error_result():
    res = train(_Broken(), "adamw", seeds=[0, 1], eval_every=2)
    assert res.status == [ERROR, ERROR] and res.error == "RuntimeError: boom"
    assert np.isfinite(res.train_loss[:3]).all() and np.isnan(res.train_loss[3:]).all()
    assert list(res.eval_steps) == [0, 2] and np.isnan(res.final_metric).all()


def test_invalid_program_is_an_error_result():
    res = train("quadratic", "def bad(w, g, lr):\n    return lr * nosuchop(g)\n", steps=5)
    assert res.status == [ERROR] and "nosuchop" in res.error


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        train("quadratic", "adamw", hparams={"momentum": 0.9}, steps=2)
    with pytest.raises(ValueError, match="2 values for 1"):
        train("quadratic", "adamw", hparams={"lr": [1, 2]}, steps=2)
    with pytest.raises(KeyError, match="no task"):
        train("nope", "adamw")
    with pytest.raises(KeyError, match="no tier"):
        train("quadratic", "adamw", tier="huge")


# ------------------------------------------------------------------ determinism, records

def test_same_seed_and_threads_give_identical_curves():
    torch.set_num_threads(1)
    runs = [train("digits_logreg", "adamw", seeds=[0, 5], hparams={"lr": [1e-2, 3e-2]},
                  steps=60, eval_every=20) for _ in range(2)]
    a, b = runs
    assert np.array_equal(a.train_loss, b.train_loss)
    assert np.array_equal(a.eval_metric, b.eval_metric)
    assert not np.array_equal(a.train_loss[:, 0], a.train_loss[:, 1])


def test_result_round_trip_and_steps_to_target():
    res = train("digits_logreg", "adamw", seeds=[0, 1], hparams={"lr": [1e-2, 0.0]},
                steps=40, eval_every=10)
    back = TrainResult.from_dict(res.to_dict())
    assert np.array_equal(back.eval_metric, res.eval_metric) and back.status == res.status
    hit = res.steps_to_target(0.5)
    assert hit[0] in (10, 20, 30, 40) and hit[1] is None  # lr 0 never learns
    assert res.eval_metric[0, 1] == res.eval_metric[-1, 1]
    assert "digits_logreg/tiny" in res.summary()


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph")
def test_hessian_programs_are_reproducible_with_clipping_and_freezing():
    """Programs reading ``h`` need graph-carrying gradients: clipping and masking keep them."""
    kw = dict(seeds=[0, 1], hparams={"lr": [1e-3, 1e6]}, steps=12, clip=1.0)
    a, b = (train("digits_mlp", "sophiah", **kw) for _ in range(2))
    assert a.status == [OK, DIVERGED] and a.error is None
    assert np.array_equal(a.train_loss, b.train_loss, equal_nan=True)


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph")
def test_train_leaves_the_global_generator_alone():
    torch.manual_seed(5)
    train("digits_mlp", "sophiah", seeds=[0], steps=3)
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(5)))


def test_on_eval_sees_every_evaluation_and_can_stop_the_run():
    seen = []

    def on_eval(step, losses):
        seen.append((step, losses.shape))
        return step == 20

    res = train("digits_logreg", "adamw", seeds=[0, 1], steps=60, eval_every=10, on_eval=on_eval)
    assert seen == [(0, (2,)), (10, (2,)), (20, (2,))] and res.stopped_at == 20
    assert list(res.eval_steps) == [0, 10, 20] and res.status == [OK, OK]
    assert np.isfinite(res.train_loss[:20]).all() and np.isnan(res.train_loss[20:]).all()
    assert np.array_equal(res.final_metric, res.eval_metric[-1])
    full = train("digits_logreg", "adamw", seeds=[0, 1], steps=60, eval_every=10)
    assert full.stopped_at is None and np.array_equal(full.eval_loss[:3], res.eval_loss)


# ------------------------------------------------------------------ the heap

HEAP_RUN = {"task": "mnist1d_cnn", "program": "nadam", "seeds": list(range(14)), "steps": 12,
            "eval_every": 6, "hparams": {"lr": [1e-4 * 2 ** i for i in range(14)]}}
CHILD = """
import json, sys, numpy as np, torch
from optforge.train import train, trainer
trainer.keep_heap = lambda: False  # this process allocates as the C library does by default
torch.set_num_threads(1)
r = train(**json.loads(sys.argv[2]))
np.save(sys.argv[1], np.concatenate([r.train_loss.ravel(), r.eval_loss.ravel()]))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_heap_spares_the_page_faults_of_large_tensors():
    """Freed 64 MiB tensors' pages are reused, not unmapped and faulted in again: without
    keep_heap each of eight rounds faults in all 16384 pages of its tensor; with it, the
    heap grows for a few rounds (small objects fragment it) and then serves from memory."""
    import resource  # POSIX only

    assert keep_heap()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(8):
        torch.empty(16 << 20).fill_(1.0)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 5 * 16384


def test_training_with_the_kept_heap_matches_the_default_allocator(tmp_path):
    """Curves bit-identical to a process that allocates as the C library does by default."""
    torch.set_num_threads(1)
    out = tmp_path / "ref.npy"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    subprocess.run([sys.executable, "-c", CHILD, str(out), json.dumps(HEAP_RUN)], check=True,
                   env=env)
    r = train(**HEAP_RUN)
    here = np.concatenate([r.train_loss.ravel(), r.eval_loss.ravel()])
    assert np.array_equal(here, np.load(out), equal_nan=True)
