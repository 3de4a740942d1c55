"""Search spaces: the catalog's spaces, the default-space rule, and optimizer resolution."""

import math
import re

import optuna
import pytest

from optforge import Program, zoo
from optforge.bench.candidates import resolve, resolve_all
from optforge.bench.space import DEFAULT_LR, Dim, center, default_dim, default_space, parse_space

USER = """
def mine(w, g, m, lr, beta=0.9, beta2=0.999, eps=1e-8, wd=0.01, scale=2.0, off=0.0, negc=-1.0):
    m = interp(m, g, 1 - beta)
    update = lr * scale * (sign(m) + wd * w + off * interp(m, g, 1 - beta2) + negc * eps * w)
    return update, m
"""


@pytest.mark.parametrize(
    ("default", "want"),
    [
        (0.0, None),  # switched off: fixed
        (-1.0, None),  # negative: fixed
        (1e-8, None),  # epsilon-like: fixed
        (1e-5, None),
        (0.9, Dim("log1m", 0.7, 1 - 0.1 / 3)),  # 1 - x in [0.1/3, 0.3]
        (0.999, Dim("log1m", 0.997, 1 - 0.001 / 3)),
        (0.5, Dim("log1m", 0.5, 1 - 0.5 / 3)),  # 1 - x capped at 1/2
        (0.01, Dim("log", 0.001, 0.1)),
        (2.0, Dim("log", 0.2, 20.0)),
        (1.0, Dim("log", 0.1, 10.0)),
    ],
)
def test_default_dim_rule(default, want):
    got = default_dim(default)
    if want is None:
        assert got is None
    else:
        assert got.kind == want.kind
        assert (got.low, got.high) == pytest.approx((want.low, want.high), rel=1e-12)
        assert got.low <= default <= got.high


def test_default_space_of_a_user_program():
    p = Program.parse(USER)
    space = default_space(p)
    assert set(space) == {"lr", "beta", "beta2", "wd", "scale"}  # eps, off, negc stay fixed
    assert space["lr"] == Dim(*DEFAULT_LR)
    assert space["beta"].kind == "log1m" and space["wd"].kind == "log"


def test_suggest_stays_in_bounds_and_log1m_samples_one_minus_x():
    space = default_space(Program.parse(USER))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for _ in range(50):
        trial = study.ask()
        values = {n: d.suggest(trial, n) for n, d in space.items()}
        for n, d in space.items():
            assert d.low <= values[n] <= d.high
        assert "1-beta" in trial.params and math.isclose(1 - trial.params["1-beta"],
                                                         values["beta"])
        study.tell(trial, 0.0)


def test_center_uses_defaults_inside_the_space():
    p = Program.parse(USER)
    c = center(default_space(p), p)
    assert c["beta"] == 0.9 and c["wd"] == 0.01 and c["scale"] == 2.0
    assert c["lr"] == pytest.approx(math.sqrt(1e-5 * 1e-1))


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"nope": ["log", 1e-3, 1e-1]}, "not a hyperparameter"),
        ({"lr": ["cubic", 1e-3, 1e-1]}, "unknown space kind"),
        ({"lr": ["log", 0.0, 1e-1]}, "low > 0"),
        ({"lr": ["log", 1e-1, 1e-3]}, "low < high"),
        ({"beta": ["log1m", 0.5, 1.0]}, "high < 1"),
        ({"lr": ["log", 1e-3]}, r"\[kind, low, high\]"),
        ({"lr": "log"}, r"\[kind, low, high\]"),
    ],
)
def test_parse_space_errors(raw, match):
    with pytest.raises(ValueError, match=match):
        parse_space(raw, Program.parse(USER))


def test_zoo_spaces_parse_and_contain_lr():
    for name in zoo.names():
        cand = resolve(name)
        assert "lr" in cand.space and cand.origin == "zoo"
        for hp in cand.space:
            assert hp == "lr" or hp in cand.program.hyperparameters


def test_resolve_program_file(tmp_path):
    path = tmp_path / "my_rule.py"
    path.write_text(USER)
    cand = resolve(str(path))
    assert cand.label == "my_rule" and cand.origin == str(path)
    assert set(cand.space) == set(default_space(cand.program))


def test_resolve_errors(tmp_path):
    with pytest.raises(KeyError, match="no zoo optimizer"):
        resolve("adamz")
    with pytest.raises(ValueError, match="does not exist"):
        resolve(str(tmp_path / "missing.py"))
    bad = tmp_path / "bad.py"
    bad.write_text("def bad(w, g, lr):\n    update = lr * foo(g)\n    return update\n")
    with pytest.raises(ValueError, match=r"bad\.py: line 2"):
        resolve(str(bad))


def test_resolve_all_adds_the_baseline_and_rejects_duplicate_labels(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(USER)
    cands = resolve_all([str(path)])
    assert [c.label for c in cands] == ["adamw", "mine"]
    assert [c.label for c in resolve_all(["lion", str(path), "adamw"])] == ["adamw", "lion", "mine"]
    assert [c.label for c in resolve_all(["lion"], baseline=str(path))] == ["mine", "lion"]
    with pytest.raises(ValueError, match="labelled 'adamw'"):
        resolve_all(["adamw", "lion", "adamw"])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine.py").write_text(USER)
    with pytest.raises(ValueError, match="labelled 'mine'"):
        resolve_all([str(path), str(tmp_path / "sub" / "mine.py")])


@pytest.mark.parametrize("lines, expect", [
    ('# space: lr = ["log", 1e-3, 1.0]', {"lr": ("log", 1e-3, 1.0)}),
    ('# space: lr = ["log", 0.01, 3.0]\n# space: beta = ["linear", 0.5, 0.9]',
     {"lr": ("log", 0.01, 3.0), "beta": ("linear", 0.5, 0.9)}),
    ('# space: lr = ["log", 1e-3]', "must be [kind, low, high]"),
    ('# space: gamma = ["log", 1e-3, 1.0]', "'gamma' is not a hyperparameter"),
    ('# space: lr = ["log", 1e-3, ', "bad '# space:' line"),
])
def test_program_file_declares_its_space(tmp_path, lines, expect):
    path = tmp_path / "mine.py"
    path.write_text(lines + "\ndef mine(w, g, m, lr, beta=0.7):\n    m = interp(m, g, beta)\n"
                    "    update = lr * sign(m)\n    return update, m\n")
    if isinstance(expect, str):
        with pytest.raises(ValueError, match=re.escape(expect)):
            resolve(str(path))
        return
    space = resolve(str(path)).space
    for name, (kind, low, high) in expect.items():
        assert (space[name].kind, space[name].low, space[name].high) == (kind, low, high)
    if "beta" not in expect:  # undeclared hyperparameters keep the default rule
        assert space["beta"].kind == "log1m"


@pytest.mark.parametrize(
    ("dim", "side", "want"),
    [
        (("log", 1e-5, 1e-2), "high", (1e-5, 1e-1)),  # one decade
        (("log", 1e-5, 1e-2), "low", (1e-6, 1e-2)),
        (("log1m", 0.9, 0.999), "high", (0.9, 0.9999)),  # one decade of 1 - x
        (("log1m", 0.9, 0.999), "low", (0.0, 0.999)),  # 1 - x = 1: x stops at 0
        (("log1m", 0.0, 0.999), "low", None),  # the hard limit
        (("linear", 0.8, 0.95), "high", (0.8, 0.995)),  # a momentum stays below 1
        (("linear", 0.8, 0.95), "low", (0.65, 0.95)),  # one width
        (("linear", 1.0, 2.0), "low", (0.1, 2.0)),  # would cross 0: a tenth of itself
        (("linear", 1.0, 2.0), "high", (1.0, 3.0)),
        (("linear", -1.0, -0.5), "high", (-1.0, -0.05)),
        (("linear", -1.0, -0.5), "low", (-1.5, -0.5)),
        (("linear", 0.0, 1.0), "low", None),  # a bound at 0 stays
        (("linear", -1.0, 0.0), "high", None),
    ],
)
def test_widen_rule(dim, side, want):
    got = Dim(*dim).widen(side)
    if want is None:
        assert got is None
    else:
        assert got.kind == dim[0] and (got.low, got.high) == pytest.approx(want)


@pytest.mark.parametrize(
    ("dim", "value", "edge"),
    [
        (("log", 1e-5, 1e-2), 0.0084, "high"),  # issue #11: Lion's tuned lr
        (("log", 1e-5, 1e-2), 0.006, None),  # position 0.926
        (("log", 1e-5, 1e-2), 1.4e-5, "low"),
        (("linear", 0.8, 0.95), 0.945, "high"),
        (("linear", 0.8, 0.95), 0.9, None),
        (("log1m", 0.9, 0.999), 0.9989, "high"),  # 1 - x at 0.0011: 0.98 of its log range
        (("log1m", 0.9, 0.999), 0.99, None),
    ],
)
def test_edge_is_the_outer_five_percent_in_the_sampling_scale(dim, value, edge):
    d = Dim(*dim)
    assert d.edge(value) == edge
    assert d.at(d.position(value)) == pytest.approx(value)
