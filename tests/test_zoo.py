"""The zoo: catalog completeness, and every program against its reference implementation.

One parameterised table runs every (optimizer, setting) pair of the catalog
through :func:`optforge.zoo.verify.check`: the program in ProgramOptimizer and
the reference optimizer (torch.optim / pytorch_optimizer) on the same float64
model and batches for 20 steps; the largest parameter deviation must be within
the documented tolerance. Mis-specified programs (a formula detail changed)
must fail the same check, so the comparison can tell formulations apart.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from optforge import zoo
from optforge.lang.ir import Program
from optforge.zoo import verify

REQUIRED = [
    "sgd", "momentum", "nesterov", "adam", "adamw", "amsgrad", "nadam", "radam", "adabelief",
    "adabound", "adamod", "laprop", "adopt", "lion", "signsgd", "signum", "adafactor", "lamb",
    "lars", "sophiah", "adahessian", "mars_adamw", "cautious_adamw", "cautious_lion", "exadam",
    "muon", "ademamix",
]
CASES = [(n, i) for n in zoo.names() for i in range(len(zoo.entry(n).settings))]
DOCS = Path(__file__).resolve().parents[1] / "docs" / "VERIFICATION.md"


# ------------------------------------------------------------------ catalog


def test_names_include_the_literature():
    assert set(REQUIRED) <= set(zoo.names())
    assert zoo.names() == sorted(zoo.names())


@pytest.mark.parametrize("name", zoo.names())
def test_catalog_entry_is_complete(name):
    e, program = zoo.entry(name), zoo.load(name)
    assert isinstance(program, Program) and program.name == name
    assert e.title and e.citation and e.reference and e.notes
    tunable = {"lr", *program.hyperparameters}
    assert "lr" in e.space and set(e.space) <= tunable
    for kind, low, high in e.space.values():
        assert kind in ("log", "linear", "log1m") and low < high
        assert kind != "log" or low > 0
        assert kind != "log1m" or low >= 0 and high < 1  # 1 - x log-uniform, x in [0, 1)
    assert len(e.settings) >= 3
    assert len({tuple(sorted(s.items())) for s in e.settings}) == len(e.settings)
    for s in e.settings:
        assert "lr" in s and set(s) <= tunable
    assert name in verify.REFERENCES
    assert bool(e.hessian) == program.reads_hessian
    if e.hessian:
        assert e.hessian["distribution"] in ("rademacher", "gaussian")
        assert e.hessian["every"] in program.hyperparameters
        assert all(float(s[e.hessian["every"]]).is_integer() for s in e.settings)


def test_options_give_the_hessian_law_and_period():
    assert zoo.options("adamw") == {}
    assert zoo.options("sophiah") == {"hessian_distribution": "gaussian", "hessian_every": 10}
    assert zoo.options("adahessian", k=3) == {"hessian_distribution": "rademacher",
                                             "hessian_every": 3}


def test_unknown_name_is_a_precise_error():
    with pytest.raises(KeyError, match="no zoo optimizer 'adamx'; known: .*adamw"):
        zoo.entry("adamx")


# ------------------------------------------------------------- resolve: zoo name or file

RULE = "def mine(w, g, m, lr, beta=0.9):\n    m = beta * m + g\n    return lr * m, m\n"


@pytest.mark.parametrize(("spec", "kind"), [
    ("adamw", "zoo"), ("  Lion ", "zoo"),  # case and surrounding space ignored
    ("rule.py", "file"), ("sub/other", "file"),  # a .py suffix or a path separator: a file
    ("bare", "file"),  # an existing file without either
])
def test_resolve_reads_a_zoo_name_or_a_program_file(spec, kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    for name in ("rule.py", "sub/other", "bare"):
        (tmp_path / name).write_text(RULE)
    found = zoo.resolve(spec)
    if kind == "zoo":
        name = spec.strip().lower()
        text = (Path(zoo.__file__).parent / "programs" / f"{name}.py").read_text()
        assert (found.entry.name, found.path, found.label) == (name, None, name)
    else:
        text = RULE
        assert found.entry is None and found.path == Path(spec)
        assert found.label == Path(spec).stem
    assert found.text == text and found.program == Program.parse(text)


@pytest.mark.parametrize(("spec", "error", "match"), [
    ("adamz", KeyError, r"'adamz' is neither a program file nor a zoo optimizer \(no zoo "
                        r"optimizer 'adamz'; known: .*adamw"),
    ("missing.py", ValueError, "program file 'missing.py' does not exist"),
    ("nowhere/rule", ValueError, "does not exist"),
    ("  ", ValueError, "a zoo name or a program file"),
])
def test_resolve_errors(spec, error, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=match):
        zoo.resolve(spec)


@pytest.mark.parametrize("spec", ["ADAMW", "rule.py", "bare"])
def test_every_command_reads_a_spec_the_same_way(spec, tmp_path, monkeypatch):
    """bench, search, export and create_optimizer: one rule, one program."""
    from optforge.bench.candidates import resolve as bench_resolve
    from optforge.export import resolve as export_resolve
    from optforge.optim.create import resolve_program
    from optforge.search.evolution import load_programs

    monkeypatch.chdir(tmp_path)
    for name in ("rule.py", "bare"):
        (tmp_path / name).write_text(RULE)
    expected = zoo.resolve(spec).program
    assert bench_resolve(spec).program == expected
    assert export_resolve(spec)[0] == expected
    assert resolve_program(spec)[0] == expected
    assert load_programs([spec]) == [expected]


# ------------------------------------------------------------- verification


@pytest.mark.parametrize(("name", "index"), CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_program_matches_reference(name, index):
    row = verify.check(name, zoo.entry(name).settings[index])
    assert row.deviation <= row.tolerance, (
        f"{name} {row.setting}: deviation {row.deviation:.3g} > {row.tolerance:g}")
    # the setting is informative: a real trajectory whose dynamics keep rounding far below the
    # tolerance, so that the tolerance separates formulations rather than noise
    assert row.moved > 1e-2
    assert row.floor < row.tolerance / 10


# a changed formula detail -> (zoo optimizer whose reference judges it, the changed program)
WRONG = {
    "eps inside the square root": ("adam", """
def adam(w, g, m, v, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, wd=0.0):
    d = g + wd * w
    m = interp(m, d, 1 - beta1)
    v = beta2 * v + (1 - beta2) * d * d
    update = lr / (1 - beta1 ** step) * m / sqrt(v / (1 - beta2 ** step) + eps)
    return update, m, v
"""),
    "decoupled instead of L2 weight decay": ("adam", """
def adam(w, g, m, v, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, wd=0.0):
    m = interp(m, g, 1 - beta1)
    v = beta2 * v + (1 - beta2) * g * g
    denom = sqrt(v) / sqrt(1 - beta2 ** step) + eps
    update = lr / (1 - beta1 ** step) * m / denom + lr * wd * w
    return update, m, v
"""),
    "Hessian EMA on every step, not only on refresh steps": ("sophiah", """
def sophiah(w, g, m, hm, h, lr, step, beta1=0.96, beta2=0.99, rho=0.01, eps=1e-12, wd=0.0,
            k=10):
    m = interp(m, g, 1 - beta1)
    hm = interp(hm, h, 1 - beta2)
    update = lr * (clip(m / maximum(hm, eps), rho) + wd * w)
    return update, m, hm
"""),
    "Newton-Schulz without the tall-matrix scale": ("muon", """
def muon(w, g, buf, lr, momentum=0.95, nesterov=1.0, wd=0.0):
    buf = interp(buf, g, 1 - momentum)
    d = where(nesterov, interp(g, buf, momentum), buf)
    update = lr * (orthogonalize(d) + wd * w)
    return update, buf
"""),
}


@pytest.mark.parametrize("what", sorted(WRONG))
def test_a_changed_formula_fails(what):
    name, text = WRONG[what]
    setting = next(s for s in zoo.entry(name).settings if s.get("wd", 1) and s.get("k", 2) > 1)
    row = verify.check(name, setting, program=Program.parse(text))
    assert row.deviation > 1e3 * row.tolerance


def test_deviation_counts_nan_as_infinite():
    a = [{"w": verify.init_params()["w1"]}]
    b = [{"w": a[0]["w"] * math.nan}]
    assert verify.deviation(a, b) == math.inf


def test_report_formats():
    rows = [verify.check("sgd", zoo.entry("sgd").settings[0], steps=3)]
    text = verify.text_table(rows)
    assert "torch.optim.SGD" in text and "yes" in text
    md = verify.markdown(rows, steps=3)
    assert "| `sgd` | `torch.optim.SGD` | lr=0.5, wd=0 |" in md
    assert "## Formulation notes" in md


def test_docs_page_lists_every_optimizer():
    text = DOCS.read_text()
    for name in zoo.names():
        assert f"| `{name}` |" in text, f"{name} missing from {DOCS}: regenerate it"
    assert "**NO**" not in text
