"""The space ``experiments/run.py`` writes for a found program, as the bench reads it back:
``lr`` from the search's rates, the baseline's own ranges for the hyperparameters both tune,
the bench's default rule for the rest (docs/BENCH.md's table, written out here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from optforge import zoo
from optforge.bench.candidates import resolve
from optforge.store.db import StoreError

RUN = Path(__file__).resolve().parents[1] / "experiments" / "run.py"


@pytest.fixture(scope="module")
def run_module():
    spec = importlib.util.spec_from_file_location("experiments_run", RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.parametrize("warm_start, baseline, expected", [
    # NAdam's wd = 0 (switched off: fixed by the default rule) is tuned over AdamW's range;
    # momentum_decay, which AdamW lacks, by the default rule (log [d/10, 10 d]); eps fixed
    ("nadam", "adamw", {"wd": ("log", 1e-4, 1e-1), "beta1": ("linear", 0.8, 0.95),
                        "beta2": ("log1m", 0.9, 0.999), "momentum_decay": ("log", 4e-4, 4e-2)}),
    # Lion against AdamW: the shared names take AdamW's ranges, not Lion's own
    ("lion", "adamw", {"wd": ("log", 1e-4, 1e-1), "beta1": ("linear", 0.8, 0.95),
                       "beta2": ("log1m", 0.9, 0.999)}),
])
def test_found_space_shares_the_baselines_ranges(run_module, tmp_path, warm_start, baseline,
                                                 expected):
    program = zoo.resolve(warm_start).program
    path = tmp_path / "found.py"
    run_module.write_found(program, 3.0, path, baseline)
    space = resolve(str(path)).space
    lr = space.pop("lr")  # the baseline's range (AdamW's: log 1e-4..10, the zoo catalog's)
    assert (lr.kind, lr.low, lr.high) == ("log", pytest.approx(3e-4), pytest.approx(30))  # x 3
    assert zoo.entry(baseline).space["lr"] == ["log", 1e-4, 10.0]
    assert set(space) == set(expected)
    for name, (kind, low, high) in expected.items():
        assert (space[name].kind, space[name].low, space[name].high) == (
            kind, pytest.approx(low), pytest.approx(high)), name



def test_no_program_is_picked_without_a_selection_survivor(run_module, tmp_path):
    """Session 5's third transfer run promoted 8 evolved programs to the selection suite and
    none survived: no found program (None; summary.md says so and nothing is benched);
    ``fallback`` is the explicit opt-in (it reads the run's store, not committed)."""
    import json

    result = json.loads((RUN.parent / "results" / "transfer-s5" / "result.json").read_text())
    promoted = [f for f in result["funnel"] if f["stage"] == "selection"]
    assert result["config"]["selection"] and len(promoted) == 8 and not result["winners"]
    assert run_module.pick(result, tmp_path) is None
    with pytest.raises(StoreError, match="does not exist"):  # the fallback reads the store
        run_module.pick(result, tmp_path / "run", fallback=True)


def test_lr_ratio_is_the_geometric_mean_over_first_tier_tasks(run_module):
    """Known answer: rates 2x and 8x the baseline's on two first-tier tasks (4x), one task
    evaluated twice (2x and 8x there: 4x), other stages and tiers ignored."""
    result = {"config": {"tiers": ["tiny:a,b@150"]},
              "baselines": {"a/tiny/150": {"lr": 0.01}, "b/tiny/150": {"lr": 0.1},
                            "a/small/600": {"lr": 1.0}}}
    rates = [("tier0", {"a": 0.02, "b": 0.8}), ("selection", {"c": 5.0}),
             ("tier0", {"b": 0.2}), ("tier1", {"a": 9.0})]
    # a: 2x; b: geometric mean of 8x and 2x = 4x; together sqrt(2 x 4)
    assert run_module.lr_ratio(result, rates) == pytest.approx(8 ** 0.5)
    with pytest.raises(ValueError, match="no first-tier rates"):
        run_module.lr_ratio(result, [("selection", {"c": 5.0})])
