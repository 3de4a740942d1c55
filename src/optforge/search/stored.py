"""Search runs in the run store: create, resume, run (the entry points bench has).

``optforge search ... --out RUN_DIR`` is :func:`create_run`, then :func:`run_stored`
(``Search(config, store=store).run()`` and :meth:`SearchResult.save`);
``optforge search --resume RUN_DIR`` is :func:`open_run` and the same. In Python::

    result = run_search("runs/s1", SearchConfig(evaluations=50))  # create, run, save
    result = resume_search("runs/s1")  # where it stopped (re-read, if finished)

The stored config is :meth:`SearchConfig.as_dict`; the run store replays what it
holds, so a resumed run continues exactly where it stopped (docs/RUNS.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..lang.fingerprint import PROBE_STEPS_V1
from ..store import RunStore, StoreError
from .config import SearchConfig
from .filters import FILTERS_V1
from .results import SearchResult

KIND = "search"


def create_run(run_dir: str | Path, config: SearchConfig,
               in_flight: int | None = None) -> RunStore:
    """A new search run in ``run_dir`` (new or empty) for ``config``, checked first (tasks,
    device, programs: ValueError/KeyError, nothing created). ``in_flight``: the jobs the
    backend keeps in flight, where known, stored so a resume keeps them."""
    config.check_tasks()
    config.check_programs()
    meta = {} if in_flight is None else {"in_flight": in_flight}
    return RunStore.create(run_dir, KIND, config.as_dict(), **meta)


def open_run(run_dir: str | Path) -> tuple[SearchConfig, RunStore]:
    """An existing search run and its config (StoreError, nothing written, if it is not
    one)."""
    store = RunStore.open(run_dir)
    kind = store.kind
    if kind != KIND:
        store.close()
        raise StoreError(f"{run_dir} is a {kind} run, not a search run")
    # a run stored before the compile option trained eagerly, and one stored before
    # fingerprint_steps fingerprinted three steps: resume it so; a stored filter list is
    # kept as it is, and a config without one keeps the four of before 'weight'
    # (the default it resumed with until then); one stored before lr_grid_relative
    # trained on absolute rates, the option's default
    old = {"compile": "false", "fingerprint_steps": list(PROBE_STEPS_V1),
           "filters": list(FILTERS_V1)}
    return SearchConfig.from_dict({**old, **store.config}), store


def run_stored(config: SearchConfig, store: RunStore,
               **search: Any) -> tuple[SearchResult, list[Path]]:
    """Run (or continue) the search in ``store`` (closed at the end), then save its files
    in the run directory: the result and the paths :meth:`SearchResult.save` wrote."""
    from .engine import Search

    with store:
        result = Search(config, store=store, **search).run()
    return result, result.save(store.path, config)


def run_search(run_dir: str | Path, config: SearchConfig, **search: Any) -> SearchResult:
    """Create a search run in ``run_dir``, run it and save its files there; ``search``:
    :class:`~optforge.search.Search`'s options (``make_evaluator``, ``on_progress``,
    ``caches``)."""
    return run_stored(config, create_run(run_dir, config), **search)[0]


def resume_search(run_dir: str | Path, **search: Any) -> SearchResult:
    """Continue (or re-read, if finished) the search run in ``run_dir``; files go there."""
    return run_stored(*open_run(run_dir), **search)[0]
