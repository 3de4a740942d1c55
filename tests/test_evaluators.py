"""Evaluation backends: results, failures, timeouts, SIGKILLed workers, retries."""

import os
import signal
import threading
import time

import pytest

from optforge import zoo
from optforge.lang.ir import Program
from optforge.runtime import ERROR, LOST, OK, TIMEOUT, InlineBackend, ProcessBackend, make_backend
from optforge.runtime.faults import FaultyFitness
from optforge.search.evaluator import Job
from optforge.search.fitness import TargetFitness

BASE = TargetFitness(zoo.load("adamw"))
SGD = str(zoo.load("sgd"))


def named(name: str) -> Program:
    """SGD under another name (the fault triggers read the name)."""
    return Program.parse(SGD.replace("def sgd", f"def {name}"))


EXPECTED = BASE.evaluate(zoo.load("sgd"), "s").fitness

# name -> (status, attempts, fitness or None for -inf)
CASES = {
    "plain": (OK, 1, EXPECTED),
    "die_once": (OK, 2, EXPECTED),  # SIGKILLed mid-evaluation, retried in a new worker
    "boom": (ERROR, 1, None),
    "hang": (TIMEOUT, 1, None),
    "die_always": (LOST, 2, None),  # retries=1: two attempts, then recorded failed
    "plain_after": (OK, 1, EXPECTED),  # the driver goes on
}


def _drain(backend, names):
    out = {}
    for i, name in enumerate(names):
        backend.submit(Job(i, named(name), "s"))
        assert backend.pending() <= i + 1
        while backend.pending() >= backend.capacity:
            o = backend.take_outcome()
            out[o.job.program.name] = o
    while backend.pending():
        o = backend.take_outcome()
        out[o.job.program.name] = o
    return out


def _check(out, cases):
    assert set(out) == set(cases)
    for name, (status, attempts, fitness) in cases.items():
        o = out[name]
        assert (o.status, o.attempts) == (status, attempts), (name, o)
        if fitness is None:
            assert o.evaluation.fitness == -float("inf") and o.evaluation.error, name
        else:
            assert o.evaluation.fitness == fitness and o.evaluation.error is None, name


def test_process_pool_survives_crashes_hangs_and_errors(tmp_path):
    fitness = FaultyFitness(BASE, tmp_path)
    with ProcessBackend(fitness, workers=2, timeout=2.0, retries=1) as pool:
        out = _drain(pool, list(CASES))
        assert pool.deaths == 3  # die_once once, die_always twice
    _check(out, CASES)
    assert "timed out after 2 s" in out["hang"].evaluation.error
    assert "worker died" in out["die_always"].evaluation.error
    assert "RuntimeError: boom" in out["boom"].evaluation.error


def test_process_pool_worker_killed_from_outside_is_retried(tmp_path):
    fitness = FaultyFitness(BASE, tmp_path, slow=3.0)
    with ProcessBackend(fitness, workers=1, retries=2) as pool:
        pool.submit(Job(0, named("slow"), "s"))
        victims = []

        def killer():
            while not pool.running():
                time.sleep(0.02)
            pid, _ = pool.running()[0]
            victims.append(pid)
            os.kill(pid, signal.SIGKILL)

        t = threading.Thread(target=killer)
        t.start()
        o = pool.take_outcome()
        t.join()
    assert (o.status, o.attempts, o.evaluation.fitness) == (OK, 2, EXPECTED)
    assert not o.worker.endswith(f":{victims[0]}")


def test_inline_backend_errors_and_timeouts(tmp_path):
    cases = {k: CASES[k] for k in ("plain", "boom", "hang", "plain_after")}
    out = _drain(InlineBackend(FaultyFitness(BASE, tmp_path), capacity=2, timeout=0.5), cases)
    _check(out, cases)


def test_backend_names():
    assert isinstance(make_backend("inline", BASE, 3), InlineBackend)
    pool = make_backend("process", BASE, 2, timeout=1, retries=0)
    assert isinstance(pool, ProcessBackend) and pool.capacity == 2 and pool.pending() == 0
    pool.close()
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("threads", BASE)
    with pytest.raises(RuntimeError, match="no job in flight"):
        InlineBackend(BASE).take()
