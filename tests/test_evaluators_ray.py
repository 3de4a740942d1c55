"""The Ray backend on a real local Ray cluster (127.0.0.1): a search end to end, faults."""

import os

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'optforge[ray]')")

from test_evaluators import BASE, EXPECTED, _drain  # noqa: E402
from test_resume import CONFIG, IN_FLIGHT, tables  # noqa: E402

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
    for name, make in (("ray", lambda f: make_backend("ray", f, IN_FLIGHT)),
                       ("inline", lambda f: InlineBackend(f, IN_FLIGHT))):
        with RunStore.create(tmp_path / name, "search", cfg.as_dict()) as store:
            Search(cfg, fitness=BASE, store=store, make_evaluator=make).run()
    assert tables(tmp_path / "ray") == tables(tmp_path / "inline")
    with RunStore.open(tmp_path / "ray", readonly=True) as s:
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
