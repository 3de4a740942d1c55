"""Mutations: every child is valid, new, within limits; a seed fixes the children."""

from __future__ import annotations

import random

import pytest

from optforge import zoo
from optforge.lang.errors import ProgramError
from optforge.lang.infer import check
from optforge.lang.ir import Call, Const, Program, Var, walk
from optforge.search.mutate import (
    MUTATIONS,
    MutationConfig,
    MutationError,
    Mutator,
    length,
    scope,
)

SGD = "def sgd(g, lr):\n    return lr * g\n"
MOMENTUM = """def momentum(w, g, m, lr, beta=0.9, wd=0.001):
    m = interp(m, g, 1 - beta)
    d = m + wd * w
    return lr * d, m
"""
LION = """def lion(w, g, m, lr, beta1=0.9, beta2=0.99, wd=0.0):
    update = lr * (sign(interp(m, g, 1 - beta1)) + wd * w)
    m = interp(m, g, 1 - beta2)
    return update, m
"""
PARENTS = {"sgd": SGD, "momentum": MOMENTUM, "lion": LION}


def parent(name: str) -> Program:
    return zoo.load(name) if name == "adamw" else Program.parse(PARENTS[name])


def only(kind: str, **kw) -> MutationConfig:
    weights = {k: float(k == kind) for k in MUTATIONS}
    return MutationConfig(weights=weights, **kw)


def consts(p: Program) -> list[float]:
    exprs = [s.expr for s in p.body] + list(p.returns)
    return [n.value for e in exprs for n in walk(e) if isinstance(n, Const)]


def calls(p: Program) -> list[str]:
    exprs = [s.expr for s in p.body] + list(p.returns)
    return [n.op for e in exprs for n in walk(e) if isinstance(n, Call)]


def children(p: Program, cfg: MutationConfig, n: int, seed: int = 0) -> list[tuple[Program, str]]:
    m = Mutator(cfg, random.Random(seed))
    return [m.mutate(p) for _ in range(n)]


@pytest.mark.parametrize("name", ["adamw", "sgd", "momentum", "lion"])
@pytest.mark.parametrize("kind", MUTATIONS)
def test_every_child_is_valid_new_and_round_trips(kind, name):
    p = parent(name)
    if name == "sgd" and kind != "insert":
        # lr * g has no statement, no constant, and any other leaf loses lr or g
        with pytest.raises(MutationError):
            children(p, only(kind), 1)
        return
    cfg = only(kind)
    for child, k in children(p, cfg, 15):
        assert k == kind
        typing = check(child)  # raises if invalid
        assert "g" in typing.update_deps and "lr" in typing.update_deps
        assert child.hash != p.hash
        assert length(child) <= cfg.max_length and len(child.slots) <= cfg.max_slots
        assert Program.parse(str(child)) == child  # the printer and parser agree
        n_body = len(p.body)
        if kind == "insert":
            assert len(child.body) == n_body + 1
            assert len(calls(child)) >= len(calls(p)) + 1
        elif kind == "delete":
            assert len(child.body) == n_body - 1
        elif kind == "argument":
            assert len(child.body) == n_body and child.slots == p.slots
        else:  # constant: the same program but one constant or hyperparameter
            assert [s.target for s in child.body] == [s.target for s in p.body]
            assert calls(child) == calls(p)
            old = consts(p) + [v for _, v in p.hyper]
            new = consts(child) + [v for _, v in child.hyper]
            changed = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
            assert len(changed) == 1
            (a, b), = changed
            assert b / a > 0  # the sign is kept: a factor 2^z


def test_constant_factor_follows_two_to_the_normal():
    """log2 of the factor has mean ~0 and standard deviation ~1 (up to 4-digit rounding)."""
    import math

    p = Program.parse("def f(g, lr, c=1.0):\n    return lr * c * g\n")
    z = []
    for child, _ in children(p, only("constant"), 400, seed=3):
        z.append(math.log2(child.hyperparameters["c"]))
    mean = sum(z) / len(z)
    sd = (sum((x - mean) ** 2 for x in z) / len(z)) ** 0.5
    assert abs(mean) < 0.15 and 0.85 < sd < 1.15


def test_new_constants_are_positive_and_ops_come_from_the_vocabulary():
    p = parent("momentum")
    cfg = only("insert", ops=("sign", "maximum", "interp"), new_constant=0.8)
    for child, _ in children(p, cfg, 40, seed=1):
        assert all(c > 0 for c in consts(child) if c not in consts(p))
        new_ops = set(calls(child)) - set(calls(p))
        assert new_ops <= {"sign", "maximum", "interp"}


def test_insertion_can_create_a_slot_that_carries_its_own_past():
    p = Program.parse(SGD)
    for child, _ in children(p, only("insert", new_slot=1.0), 10, seed=2):
        (slot,) = child.slots
        stmt = next(s for s in child.body if s.target == slot)
        assert slot in {n.name for n in walk(stmt.expr) if isinstance(n, Var)}
        assert child.returns[1] == Var(slot)


def test_insertions_reach_the_update_often():
    """A new temporary is wired into a later read, so most insertions change behaviour."""
    p = parent("momentum")
    cfg = only("insert", overwrite=0.0, new_slot=0.0)
    m = Mutator(cfg, random.Random(5))
    for _ in range(30):
        m.mutate(p)
    # every accepted child changed the hash; the draws wasted on dead code stay a minority
    assert m.rejected < 30


def test_max_length_blocks_insertions():
    p = parent("momentum")
    with pytest.raises(MutationError):
        children(p, only("insert", max_length=length(p), max_tries=20), 1)


def test_max_slots_is_respected():
    p = parent("momentum")  # one slot
    cfg = only("insert", new_slot=1.0, max_slots=1)
    assert all(len(c.slots) <= 1 for c, _ in children(p, cfg, 20, seed=4))


def test_same_seed_same_children_other_seed_other_children():
    p = zoo.load("adamw")
    cfg = MutationConfig()
    a = [str(c) for c, _ in children(p, cfg, 25, seed=11)]
    b = [str(c) for c, _ in children(p, cfg, 25, seed=11)]
    c = [str(c) for c, _ in children(p, cfg, 25, seed=12)]
    assert a == b
    assert a != c


def test_scope_lists_inputs_slots_hyperparameters_and_earlier_targets():
    p = parent("momentum")
    assert scope(p, 0) == ["w", "g", "lr", "step", "m", "beta", "wd"]
    assert scope(p, 2) == ["w", "g", "lr", "step", "m", "beta", "wd", "d"]


def test_deleting_a_needed_statement_bypasses_to_its_arguments():
    p = Program.parse("def f(g, lr):\n    t = sign(g)\n    return lr * t\n")
    (child, _), = children(p, only("delete"), 1)
    assert child.body == () and str(child).strip().endswith("return lr * g")


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="unknown mutation"):
        MutationConfig(weights={"swap": 1.0})
    with pytest.raises(ValueError, match="unknown op"):
        MutationConfig(ops=("nope",))
    with pytest.raises(ValueError, match="positive"):
        MutationConfig(weights={"insert": 0.0})
    with pytest.raises(ValueError, match="probability"):
        MutationConfig(new_slot=1.5)
    with pytest.raises(ValueError, match="not inputs"):
        MutationConfig(require=("x",))


def test_require_rejects_updates_that_ignore_lr():
    m = Mutator(MutationConfig(), random.Random(0))
    assert not m.valid(Program.parse("def f(w, g):\n    return g + w\n"))
    assert m.valid(Program.parse(SGD))
    with pytest.raises(ProgramError):
        check(Program.parse("def f(g, lr):\n    return lr\n"))
