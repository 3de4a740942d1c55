"""Evaluation backends: results, failures, timeouts, SIGKILLed workers, retries."""

import os
import signal
import threading
import time

import pytest

from optforge import zoo
from optforge.evaluation import Job
from optforge.lang.ir import Program
from optforge.runtime import ERROR, LOST, OK, TIMEOUT, InlineBackend, ProcessBackend, make_backend
from optforge.runtime.faults import FaultyFitness
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
    "fails": (ERROR, 1, None),  # returned an evaluation with an error: never cached as ok
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
    cases = {k: CASES[k] for k in ("plain", "boom", "fails", "hang", "plain_after")}
    out = _drain(InlineBackend(FaultyFitness(BASE, tmp_path), capacity=2, timeout=0.5), cases)
    _check(out, cases)


def test_backend_names():
    assert isinstance(make_backend("inline", BASE, 3), InlineBackend)
    pool = make_backend("process", BASE, 2, timeout=1, retries=0)
    assert isinstance(pool, ProcessBackend) and pool.pending() == 0
    assert (pool.workers, pool.capacity) == (2, 8)  # a queue of three jobs per worker
    pool.close()
    assert make_backend("process", BASE, 3, queue=1).capacity == 4
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("threads", BASE)
    with pytest.raises(RuntimeError, match="no job in flight"):
        InlineBackend(BASE).take()


def test_a_freed_worker_takes_the_next_queued_job_at_once(tmp_path):
    fitness = FaultyFitness(BASE, tmp_path, slow=0.3)
    with ProcessBackend(fitness, workers=1, queue=2) as pool:
        for i in range(3):
            pool.submit(Job(i, named(f"slow{i}"), "s"))
        assert pool.pending() == 3 and len(pool.running()) <= 1
        first = pool.take_outcome()
        # no further call: the next job went to the worker inside take_outcome
        assert [job.key for _, job in pool.running()] in ([], [1])
        assert len(pool._busy) == 1 and pool._busy[0].job.key == 1
        rest = [pool.take_outcome() for _ in range(2)]
    assert [o.job.key for o in [first, *rest]] == [0, 1, 2]
    assert all(o.status == OK and o.evaluation.fitness == EXPECTED for o in [first, *rest])
    assert pool.busy >= 3 * 0.3


def test_search_decisions_depend_on_jobs_in_flight_not_on_workers(tmp_path):
    """2 jobs in flight: 2 workers, or 1 worker and 1 queued, or inline: the same run."""
    from test_resume import CONFIG, tables

    from optforge.search import Search, SearchConfig
    from optforge.store import RunStore

    cfg = SearchConfig(**{**CONFIG, "evaluations": 16})
    makers = {"w2": lambda f: make_backend("process", f, 2, queue=0),
              "w1q1": lambda f: make_backend("process", f, 1, queue=1),
              "inline": lambda f: InlineBackend(f, 2)}
    for name, make in makers.items():
        with RunStore.create(tmp_path / name, "search", cfg.as_dict()) as store:
            Search(cfg, fitness=BASE, store=store, make_evaluator=make).run()
            assert store.meta("in_flight") == 2
    assert tables(tmp_path / "w2") == tables(tmp_path / "inline") == tables(tmp_path / "w1q1")


@pytest.mark.parametrize("device, method", [("cpu", "forkserver"), ("cpu:0", "forkserver"),
                                            ("cuda", "spawn"), ("cuda:1", "spawn"),
                                            ("mps", "spawn")])
def test_a_gpu_fitness_gets_spawned_workers(device, method):
    """A process forked from the fork server cannot initialise CUDA (the server's preload
    initialised the driver; every evaluation failed on an H200): GPU fitnesses spawn."""
    from optforge.runtime.pool import start_method
    from optforge.search import Search, SearchConfig

    fitness = Search(SearchConfig(tiers=["tiny:quadratic@10"], heldout="")).build_fitness()
    fitness.device = device
    assert start_method(fitness) == method
    assert start_method(BASE) == "forkserver"  # a fitness without a device: the CPU


def test_spawned_workers_evaluate_like_the_fork_servers():
    with ProcessBackend(BASE, workers=1, context="spawn") as pool:
        pool.submit(Job(0, named("plain"), "s"))
        o = pool.take_outcome()
    assert (o.status, o.evaluation.fitness) == (OK, EXPECTED)


def test_the_fork_server_warms_the_fitness_tasks():
    from optforge.runtime.pool import warm_tasks
    from optforge.search import Search, SearchConfig

    cfg = SearchConfig(tiers=["tiny:quadratic,digits_mlp@50", "small:digits_mlp"], heldout="")
    assert warm_tasks(Search(cfg).build_fitness()) == [
        "tiny:quadratic", "tiny:digits_mlp", "small:digits_mlp"]
    assert warm_tasks(BASE) == []  # a fitness without stages: nothing to warm


@pytest.mark.parametrize("warm, loaded", [
    ("tiny:digits_mlp", {"digits": 1, "mnist1d": 0}),
    ("tiny:mnist1d_cnn,tiny:quadratic", {"digits": 0, "mnist1d": 1}),
    ("", {"digits": 0, "mnist1d": 0}),
])
def test_the_warm_module_builds_the_listed_tasks_data(warm, loaded):
    """What the fork server runs: importing ``_warm`` with WARM_TASKS set fills the data-set
    caches of exactly the listed tasks (in a fresh interpreter, like the server), and runs
    no backward pass (counted at autograd's engine entry, which ``backward`` and
    ``autograd.grad`` share): on a CUDA build the first one starts threads that break every
    process forked later."""
    import subprocess
    import sys

    from optforge.runtime.pool import WARM_TASKS

    code = ("import torch.autograd as A; calls = []; run = A._engine_run_backward\n"
            "def spy(*a, **k):\n    calls.append(1); return run(*a, **k)\n"
            "A._engine_run_backward = spy\n"
            "import optforge.runtime._warm; from optforge.tasks import data\n"
            "print(data.digits.cache_info().currsize, data.mnist1d.cache_info().currsize, "
            "len(calls))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, WARM_TASKS: warm},
                         capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.split() == [str(loaded["digits"]), str(loaded["mnist1d"]), "0"]
