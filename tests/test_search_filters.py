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
    # the weights' scale: the momentum coefficient times std(w) (the transfer experiment's
    # NAdam), without eps too (u(w, 0) is 0/0), a mixing weight reading norm(w), per-element w
    ("momentum times std(w)", "def p(w, g, m, lr, beta=0.9):\n"
     "    m = interp(m, g, 1 - beta * std(w))\n    return lr * m, m\n", "weight"),
    ("NAdam mixing by std(w)", "def p(w, g, m, v, lr, step, beta1=0.9, beta2=0.999, eps=1e-8):\n"
     "    mu = beta1 * std(w)\n" + ADAMW_BODY + "    return lr * ((1 - mu) * g + mu * m)"
     " / (sqrt(v / (1 - beta2 ** step)) + eps), m, v\n", "weight"),
    ("std(w) momentum, no eps", "def p(w, g, m, v, lr, beta1=0.9, beta2=0.999):\n"
     "    m = interp(m, g, 1 - beta1 * std(w))\n    v = interp(v, g * g, 1 - beta2)\n"
     "    return lr * m / sqrt(v), m, v\n", "weight"),
    ("mixing weight norm(w)", "def p(w, g, m, lr, beta=0.9):\n    m = interp(m, g, 1 - beta)\n"
     "    return lr * interp(g, m, minimum(norm(w), 1)), m\n", "weight"),
    ("gradient over |w| + 1", "def p(w, g, lr):\n    return lr * g / (abs(w) + 1)\n", "weight"),
    # decoupled weight decay is not weight-scale dependence: u(c w, 0) is taken out (the
    # raw updates differ: cos 0.96 for this Lion at w x 10), or, where that is 0/0, the
    # part even in g (AdamW without eps: raw cos 0.977)
    ("AdamW, wd 0.1", "def p(w, g, m, v, lr, beta1=0.9, beta2=0.999, eps=1e-8, wd=0.1):\n"
     + ADAMW_BODY + "    return lr * (m / (sqrt(v) + eps) + wd * w), m, v\n", None),
    ("AdamW without eps, wd 0.1", "def p(w, g, m, v, lr, step, beta1=0.9, beta2=0.999, wd=0.1):\n"
     + ADAMW_BODY + "    return lr * (m / sqrt(v / (1 - beta2 ** step)) + wd * w), m, v\n", None),
    ("Lion, wd 0.3", "def p(w, g, m, lr, beta1=0.9, beta2=0.99, wd=0.3):\n"
     "    update = lr * (sign(interp(m, g, 1 - beta1)) + wd * w)\n"
     "    m = interp(m, g, 1 - beta2)\n    return update, m\n", None),
    ("momentum SGD, decoupled wd", "def p(w, g, m, lr, beta=0.9, wd=0.3):\n    m = beta * m + g\n"
     "    return lr * (m + wd * w), m\n", None),
    # the weights' scale may set the step size, per tensor: trust ratios, relative steps
    ("LAMB trust ratio, wd 0.1", "def p(w, g, m, v, lr, beta1=0.9, beta2=0.999, eps=1e-6, "
     "wd=0.1):\n" + ADAMW_BODY + "    u = m / (sqrt(v) + eps) + wd * w\n"
     "    return lr * minimum(norm(w), 10) / norm(u) * u, m, v\n", None),
    ("LARS ratio", "def p(w, g, m, lr, beta=0.9, eta=0.001):\n"
     "    m = beta * m + g * (eta * norm(w) / norm(g))\n    return lr * m, m\n", None),
    ("Adafactor relative step", "def p(w, g, v, lr, beta=0.999):\n"
     "    v = interp(v, g * g, 1 - beta)\n"
     "    return lr * maximum(rms(w), 1e-3) * g / sqrt(v + 1e-30), v\n", None),
    # both tensors' norms clamped at w x 1, not at w / 10: the tensors' steps compare
    # differently (cos 0.989 over both), each tensor's direction is kept
    ("layer-wise step, clamped", "def p(w, g, m, lr, beta=0.9):\n    m = interp(m, g, 1 - beta)\n"
     "    return lr * minimum(norm(w), 1) * sign(m), m\n", None),
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
