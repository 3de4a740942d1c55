"""The Ray backend on a real local Ray cluster (127.0.0.1): a search end to end, faults."""

import os

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'optforge[ray]')")

from test_evaluators import BASE, EXPECTED, _drain  # noqa: E402
from test_resume import CONFIG, tables  # noqa: E402

from optforge import zoo  # noqa: E402
from optforge.runtime import LOST, OK, TIMEOUT, InlineBackend, make_backend  # noqa: E402
from optforge.runtime.faults import FaultyFitness  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _node_ip_address="127.0.0.1", object_store_memory=80 * 2**20)
    yield
    ray.shutdown()


def test_search_on_ray_equals_inline(cluster, tmp_path):
    from optforge.search import Search, SearchConfig
    from optforge.store import RunStore

    cfg = SearchConfig(**{**CONFIG, "evaluations": 16})
    # 2 workers and a queue of 2: 4 jobs in flight, as the inline backend keeps them
    for name, make in (("ray", lambda f: make_backend("ray", f, 2, queue=2)),
                       ("inline", lambda f: InlineBackend(f, 4))):
        with RunStore.create(tmp_path / name, "search", cfg.as_dict()) as store:
            Search(cfg, fitness=BASE, store=store, make_evaluator=make).run()
    assert tables(tmp_path / "ray") == tables(tmp_path / "inline")
    with RunStore.open(tmp_path / "ray", readonly=True) as s:
        assert s.meta("in_flight") == 4
        workers = {w for (w,) in s.rows("SELECT DISTINCT worker FROM evaluations")}
        statuses = {st for (st,) in s.rows("SELECT DISTINCT status FROM evaluations")}
    assert statuses == {"ok"}
    assert workers and all(not w.endswith(f":{os.getpid()}") for w in workers)


def test_ray_worker_killed_mid_evaluation_is_retried_and_hang_times_out(cluster, tmp_path):
    backend = make_backend("ray", FaultyFitness(BASE, tmp_path), 2, timeout=4.0, retries=1)
    out = _drain(backend, ["die_once", "hang", "die_always", "plain"])
    backend.close()
    got = {k: (o.status, o.attempts) for k, o in out.items()}
    assert got == {"die_once": (OK, 2), "hang": (TIMEOUT, 1), "die_always": (LOST, 2),
                   "plain": (OK, 1)}
    assert out["die_once"].evaluation.fitness == EXPECTED == out["plain"].evaluation.fitness


def test_a_ray_worker_keeps_its_fitness_across_tasks(cluster):
    """What a fitness learns in a worker (later tiers' baselines) is not lost after a task."""
    from optforge.evaluation import Evaluation, Job

    class Counting:  # defined here: shipped to the workers by value
        """Fitness = how many evaluations this fitness object has made."""

        def __init__(self):
            self.calls = 0

        def evaluate(self, program, stage, thresholds=None):
            self.calls += 1
            return Evaluation(float(self.calls))

    backend = make_backend("ray", Counting(), 1, queue=0)
    values = []
    for i in range(4):  # one at a time: at least one worker process runs two of them
        backend.submit(Job(i, zoo.load("sgd"), "s"))
        values.append(backend.take_outcome().evaluation.fitness)
    backend.close()
    assert max(values) >= 2, values  # a fresh copy per task would count 1 every time
