"""No zoo search space clips on the tiny tasks: along each optimizer's ``lr`` range (its
other hyperparameters at the space's centre), the best of a log grid spanning the range is
not an end point by more than a plateau's noise. A range whose best learning rate is its top
(or bottom) would hand the bench a verdict made with a clipped search space (issue #11:
Lion's old [1e-5, 1e-2] on digits_logreg; every Adam-type range of [1e-4, 0.1] failed here
on the quadratic)."""

import math

import numpy as np
import pytest

from optforge import zoo
from optforge.bench.backend import RunSpec, train_replicas
from optforge.bench.candidates import resolve
from optforge.bench.space import center

GRID = 9  # log-spaced points from the low to the high end: an end point is best when the
# optimum lies within about 1/16 of the edge, the bench's 5% edge rule
# every zoo optimizer on the quadratic (a few seconds each); digits_logreg, slower (about
# 10 s for the 9 replicas), for the two optimizers of the measurement
CASES = [(name, "quadratic") for name in zoo.names()] + [
    ("lion", "digits_logreg"), ("adamw", "digits_logreg")]


def lr_sweep(name: str, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Final validation loss (seed 0, tiny tier) at each grid learning rate."""
    cand = resolve(name)
    dim = cand.space["lr"]
    lrs = np.geomspace(dim.low, dim.high, GRID)
    base = center(cand.space, cand.program)
    from optforge import tasks

    spec = RunSpec(task, "tiny", tasks.get(task).spec("tiny").steps, 4)
    res = train_replicas(spec, cand.program, [dict(base, lr=float(lr)) for lr in lrs],
                         [0] * GRID)
    loss = np.asarray(res.final_loss, dtype=float)
    return lrs, np.where(np.isfinite(loss), loss, math.inf)


PLATEAU = 0.01  # of the sweep's loss range: an end point ahead by less sits on a plateau


@pytest.mark.parametrize(("name", "task"), CASES)
def test_zoo_lr_range_does_not_clip(name, task):
    lrs, loss = lr_sweep(name, task)
    best = int(np.argmin(loss))
    assert np.isfinite(loss[best]), f"{name} diverged at every lr on {task}"
    finite = loss[np.isfinite(loss)]
    inner = loss[1:-1].min()
    # an end point clips when it beats every inner point by more than PLATEAU of the range:
    # the Adam family reaches the quadratic's noise floor (1e-4 of a 0.56 start) from lr ~2 on
    clipped = best in (0, GRID - 1) and inner - loss[best] > PLATEAU * (finite.max() - finite.min())
    assert not clipped, (
        f"{name} on {task}: the best lr of its range is the end point {lrs[best]:.3g} "
        f"(losses {dict(zip(lrs.round(6).tolist(), loss.round(4).tolist(), strict=True))})")
