"""A real, tiny search into a run directory (a few seconds): shared by the report,
export and browser tests. Not a test module itself."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from optforge.search import Search, SearchConfig
from optforge.store import RunStore

GUARDED = """def guarded(w, g, m, lr, beta=0.9):
    m = interp(m, g, 1 - beta)
    update = lr * m * (abs(g) < 1) + lr * sign(m) * (abs(g) > 1)
    return update, m
"""
"""A warm start whose source has '<' and '>' (the report must escape program text)."""


# a selection suite (disjoint from the tiers and the held-out task) that, at seed 1, ranks
# the hall of fame otherwise than the first tier does
SELECTION = "tiny:regression_mlp@40"


def config(folder: Path, **changes) -> SearchConfig:
    guarded = folder / "guarded.py"
    guarded.write_text(GUARDED)
    # promote_threshold -10: every hall-of-fame candidate climbs the funnel, so the
    # funnel, winners, simplification and held-out paths all run in seconds
    base = dict(seed=1, init=["adamw", str(guarded)], evaluations=12, population=6,
                tournament=3, tiers=["tiny:quadratic@40", "tiny:digits_logreg@40"],
                heldout="tiny:digits_mlp@40", promote_threshold=-10.0, promote_max=3,
                simplify_top=2, simplify_evaluations=4, hurdle_warmup=4)
    return SearchConfig(**{**base, **changes})


class Stop(KeyboardInterrupt):
    """Raised from the progress hook: the search stops as under Ctrl-C."""


def tiny_search(folder: Path, stop_after: int | None = None, **changes) -> Path:
    """Search into ``folder/run`` (inline evaluator; ``changes`` to :func:`config`); with
    ``stop_after`` the search is interrupted after that many results, leaving an unfinished
    run. Returns the run dir."""
    # module-scoped fixtures run before conftest's per-test one-thread setting
    torch.set_num_threads(1)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = config(folder, **changes)
    run = folder / "run"

    def hook(progress) -> None:
        if stop_after is not None and progress.counters.evaluated >= stop_after:
            raise Stop

    with RunStore.create(run, "search", cfg.as_dict()) as store:
        try:
            result = Search(cfg, store=store, on_progress=hook).run()
        except Stop:
            return run
    result.save(run, cfg)
    return run


def result_json(run: Path) -> dict:
    return json.loads((run / "result.json").read_text())
