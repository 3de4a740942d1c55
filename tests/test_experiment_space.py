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
from optforge.bench.space import Dim
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
    run_module.write_found(program, (1e-3, 3e-2), path, baseline)
    space = resolve(str(path)).space
    assert space.pop("lr") == Dim("log", 1e-4, 0.3)
    assert set(space) == set(expected)
    for name, (kind, low, high) in expected.items():
        assert (space[name].kind, space[name].low, space[name].high) == (
            kind, pytest.approx(low), pytest.approx(high)), name



def test_no_program_is_picked_without_a_selection_survivor(run_module, tmp_path):
    """Session 5's third transfer run promoted 8 evolved programs to the selection suite and
    none survived: no found program (None; summary.md says so and nothing is benched);
    ``fallback`` is the explicit opt-in (it reads the run's store, not committed)."""
    import json

    result = json.loads((RUN.parent / "results" / "transfer" / "result.json").read_text())
    promoted = [f for f in result["funnel"] if f["stage"] == "selection"]
    assert result["config"]["selection"] and len(promoted) == 8 and not result["winners"]
    assert run_module.pick(result, tmp_path) is None
    with pytest.raises(StoreError, match="does not exist"):  # the fallback reads the store
        run_module.pick(result, tmp_path / "run", fallback=True)
