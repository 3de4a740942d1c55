"""The invariance filters: a table of programs accepted and rejected, and the zoo's verdicts."""

import pytest

from optforge import zoo
from optforge.lang.ir import Program
from optforge.search.filters import FILTERS, dependencies, reject, rejecting_filter

ADAMW_BODY = """    m = interp(m, g, 1 - beta1)
    v = interp(v, g * g, 1 - beta2)
"""

CASES = [
    # (name, source, the filter that rejects it or None)
    ("sgd", "def p(w, g, lr, wd=0.01):\n    return lr * (g + wd * w)\n", None),
    ("adam-like", "def p(w, g, m, v, lr, beta1=0.9, beta2=0.999, eps=1e-8):\n" + ADAMW_BODY
     + "    return lr * m / (sqrt(v) + eps), m, v\n", None),
    ("signum", "def p(g, m, lr, beta=0.9):\n    m = interp(m, g, 1 - beta)\n"
     "    return lr * sign(m), m\n", None),
    ("step schedule", "def p(g, lr, step):\n    return lr * g / sqrt(step)\n", None),
    # the mixing weight reads the gradient's raw size (found by the discovery runs)
    ("interp weight 0.374 - g", "def p(g, m, lr):\n    m = interp(m, g, 0.374 - g)\n"
     "    return lr * m, m\n", "scale"),
    # a gradient-free drift is not scale dependence: u(0) is taken out before comparing
    ("gradient plus a constant", "def p(g, lr):\n    return lr * (g + 0.1)\n", None),
    ("clipped at an absolute size", "def p(g, lr):\n    return lr * clip(g, 0.5)\n", "scale"),
    # a slot that reads no input and stays zero: decay "replaced" by a zero slot
    ("zero slot as weight decay", "def p(w, g, s, lr, wd=0.01):\n    s = s * 0.9\n"
     "    return lr * (g + wd * s), s\n", "state"),
    # input-free but not constant: a counter, and a slot that reads it
    ("counter slot", "def p(g, c, s, lr):\n    c = c + 1\n    s = c - 1\n"
     "    return lr * g * (1 + s), c, s\n", None),
    ("hyperparameter that cancels", "def p(g, m, lr, beta=0.9):\n"
     "    m = interp(m, g, 1 - beta + beta - 0.9)\n    return lr * m, m\n", "cancel"),
    ("hyperparameter divided out", "def p(g, lr, wd=0.01):\n    return lr * g * wd / wd\n",
     "cancel"),
    # lr through a moving average: a hidden warm-up (the rediscovery's Signum)
    ("EMA of lr", "def p(g, m, s, lr):\n    s = interp(s, lr, 0.005)\n"
     "    m = interp(m, g, 0.2)\n    return s * sign(m), m, s\n", "lr"),
    ("lr squared", "def p(g, lr):\n    return lr * lr * g\n", "lr"),
    ("lr plus a floor", "def p(g, lr):\n    return (lr + 1e-3) * g\n", "lr"),
]


@pytest.mark.parametrize("name,source,rejected_by", CASES, ids=[c[0] for c in CASES])
def test_filter_table(name, source, rejected_by):
    program = Program.parse(source)
    reason = reject(program)
    if rejected_by is None:
        assert reason is None and rejecting_filter(reason) is None
    else:
        assert reason is not None and reason.startswith(rejected_by + ": "), reason
        assert rejecting_filter(reason) == rejected_by  # the search's per-filter counter
        # and it passes once that filter is switched off (the opt-out works, one at a time)
        others = [f for f in FILTERS if f != rejected_by]
        assert reject(program, others) is None


# zoo rules that read lr inside their state or not as a plain step size, by design:
# AdaBound (lr-dependent bounds), Adafactor (relative step), AdaMod and LaProp (lr inside
# a moving average); every other zoo optimizer passes every filter
ZOO_LR = {"adabound", "adafactor", "adamod", "laprop"}


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_verdicts(name):
    reason = reject(zoo.load(name))
    if name in ZOO_LR:
        assert reason is not None and reason.startswith("lr:"), reason
        assert reject(zoo.load(name), [f for f in FILTERS if f != "lr"]) is None
    else:
        assert reason is None, reason


def test_dependencies_follow_temporaries_and_overwrites():
    p = Program.parse("def p(g, m, s, lr, beta=0.9):\n    t = g * beta\n    m = interp(m, t, 0.1)\n"
                      "    s = s + m\n    return lr * m, m, s\n")
    assert dependencies(p) == {"m": {"m", "g", "beta"}, "s": {"s", "m", "g", "beta"}}


def test_unknown_filter_is_an_error():
    with pytest.raises(ValueError, match="unknown filter"):
        reject(zoo.load("sgd"), ["scale", "nope"])
