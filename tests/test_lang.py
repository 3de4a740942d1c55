"""The language: parse/print round trip, precise errors, inference, dead code, hashes."""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np
import pytest
import sympy as sp
import torch

from optforge import zoo
from optforge.lang import (
    ArityError,
    GradientIndependenceError,
    Program,
    ProgramError,
    ProgramSyntaxError,
    ShapeError,
    SignatureError,
    UnknownNameError,
    UnknownOpError,
)
from optforge.lang.canon import eliminate_dead_code, live_inputs, live_slots
from optforge.lang.fingerprint import PROBE_STEPS_V1
from optforge.lang.infer import infer
from optforge.lang.ir import Call, Const, Var, walk
from optforge.lang.symbolic import formula, latex, to_sympy
from optforge.optim.program_optimizer import ProgramOptimizer

P = Program.parse


def _zoo_texts() -> dict[str, str]:
    """Every zoo program file, catalogued or not yet."""
    root = resources.files("optforge.zoo") / "programs"
    texts = {f.name[:-3]: f.read_text() for f in root.iterdir() if f.name.endswith(".py")}
    assert set(zoo.names()) <= set(texts)
    return texts


ZOO = _zoo_texts()

# ------------------------------------------------------------------ round trip

HAND = [
    "def sgd(w, g, lr):\n    return lr * g\n",
    "def f(g):\n    return g\n",
    # precedence and associativity
    "def f(w, g, a=2.0):\n    x = (g - w) - (w - g) / (a * (g / w))\n    return x\n",
    "def f(w, g):\n    return g ** w ** 2 + (g ** w) ** 2 - -g ** 2 + (-g) ** 2\n",
    "def f(w, g):\n    return g * (g > w) + (g < 0) * (1 > g) - (g > (w > 0))\n",
    "def f(w, g):\n    return g - (w + g) - (w - g) + g * (w * g) / (w / g)\n",
    # negative constants and hyperparameters, neg of constants
    "def f(w, g, a=-0.5, b=-3, c=+2):\n    return -0.5 * g + a * clip(g, -1) + g * -2 + g ** -1\n",
    "def f(w, g):\n    return g - -0 + g * neg(2) - -(-3) + 2 ** (-1) + (-2) ** 2 - -2 ** 2\n",
    # numbers: tiny, huge, integers, other spellings
    "def f(w, g, eps=1e-30, big=1e20, n=3, x=0x10, y=1_000.5):\n"
    "    return g / (eps + big * n + x + y + 1e-300 + 1.5e300)\n",
    # docstrings, with quotes, backslashes and several lines
    'def f(w, g):\n    """A doc with "quotes", \\\\ backslash\n    and two lines."""\n'
    "    return g\n",
    "def f(w, g):\n    'one line'\n    return g\n",
    # augmented assignment, reassigned names, slots and every family
    "def f(w, g, m, v, lr, step, b=0.9):\n    m = interp(m, g, 1 - b)\n    m *= 2\n"
    "    v = maximum(v, square(g))\n    u = m / (sqrt(v) + 1e-8)\n    u -= 0.1 * global_norm(g)\n"
    "    return lr * orthogonalize(u) + norm(w) * row_mean(g) + col_mean(g), m, v\n",
    "def f(w, g, r, c, lr):\n    r = interp(r, row_mean(g * g), 0.1)\n"
    "    c = interp(c, col_mean(g * g), 0.1)\n    return lr * g / sqrt(r * c / mean(r)), r, c\n",
    "def f(w, g, s, lr):\n"
    "    s = interp(s, matmul(transpose(g), g), 0.05)\n    return lr * matmul(g, s), s\n",
    "def f(w, g, h, lr, step, k=10):\n    return lr * g / maximum(h, 1e-3) * lt(step, k)\n",
]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_round_trip(name):
    p = P(ZOO[name])
    again = P(str(p))
    assert again == p
    assert str(again) == str(p)
    assert again.hash == p.hash


def test_zoo_load_is_the_program_file():
    for name in zoo.names():
        assert zoo.load(name) == P(ZOO[name])


@pytest.mark.parametrize("text", HAND)
def test_hand_written_round_trip(text):
    p = P(text)
    again = P(str(p))
    assert again == p
    assert again.doc == p.doc
    assert str(again) == str(p)


def test_printer_drops_only_needless_parentheses():
    p = P("def f(w, g):\n    return ((g - w) - (w - g)) + ((g * w) / (w * g)) + (g ** (w ** 2))\n")
    assert str(p).splitlines()[1] == "    return g - w - (w - g) + g * w / (w * g) + g ** w ** 2"


def test_negative_literal_is_one_constant():
    p = P("def f(w, g):\n    x = -0.5\n    y = -g\n    z = -(0.5)\n    return x * y * z\n")
    assert p.body[0].expr == Const(-0.5)
    assert p.body[1].expr == Call("neg", (Var("g"),))
    assert p.body[2].expr == Const(-0.5)


def test_constants_built_in_the_ir_print_back():
    """Programs made by the search (not parsed) print to text that parses to the same IR."""
    g = Var("g")
    exprs = [
        Call("mul", (Const(-0.25), g)),
        Call("neg", (Const(0.25),)),
        Call("neg", (Const(-0.25),)),
        Call("pow", (Const(-2.0), Call("neg", (g,)))),
        Call("sub", (g, Const(-1e-12))),
        Call("pow", (g, Call("pow", (Const(-2.0), Const(-3.0))))),
    ]
    for e in exprs:
        p = Program("f", ("w", "g"), (), (), (Call("add", (g, e)),))
        assert P(str(p)) == p, str(p)


# ------------------------------------------------------------------ malformed programs

HEAD = "def f(w, g, m, lr, beta=0.9):\n"
BAD = [
    # (body or whole text, error, line, col, name)
    ("    x = foo(g)\n    return x, m\n", UnknownOpError, 2, 9, "foo"),
    ("    x = f(g)\n    return x, m\n", UnknownOpError, 2, 9, "f"),
    ("    x = g + y\n    return x, m\n", UnknownNameError, 2, 13, "y"),
    ("    x = sign\n    return x, m\n", UnknownNameError, 2, 9, "sign"),
    ("    return g * late, m\n    late = 1\n", SignatureError, 3, 5, None),
    ("    x = sign(g, g)\n    return x, m\n", ArityError, 2, 9, "sign"),
    ("    x = interp(m, g)\n    return x, m\n", ArityError, 2, 9, "interp"),
    ("    x = g * matmul(g, g)\n    return x, m\n", ShapeError, 2, 13, "matmul"),
    ("    x = g + transpose(g)\n    return x, m\n", ShapeError, 2, 9, "add"),
    ("    m = transpose(interp(m, g, 0.1))\n    return g, m\n", ShapeError, 2, 19, "interp"),
    ("    x = transpose(g)\n    return x, m\n", ShapeError, 3, 12, None),
    ("    return lr * w, m\n", GradientIndependenceError, 2, 12, "g"),
    ("    m = interp(m, g, beta)\n    return lr * w, m\n", GradientIndependenceError, 3, 12, "g"),
    ("    return m, m\n", GradientIndependenceError, 2, 12, "g"),
    ("    return g\n", SignatureError, 2, 5, None),
    ("    return g, m, m\n", SignatureError, 2, 5, None),
    ("    return\n", SignatureError, 2, 5, None),
    ("    x = g\n", SignatureError, 2, 5, None),
    ("    import os\n    return g, m\n", ProgramSyntaxError, 2, 5, None),
    ("    if beta:\n        x = g\n    return g, m\n", ProgramSyntaxError, 2, 5, None),
    ("    for i in g:\n        pass\n    return g, m\n", ProgramSyntaxError, 2, 5, None),
    ("    print(g)\n    return g, m\n", ProgramSyntaxError, 2, 5, None),
    ("    x = g.T\n    return x, m\n", ProgramSyntaxError, 2, 9, None),
    ("    x = g.sqrt()\n    return x, m\n", ProgramSyntaxError, 2, 9, None),
    ("    x = (lambda: g)\n    return x, m\n", ProgramSyntaxError, 2, 10, None),
    ("    x = g[0]\n    return x, m\n", ProgramSyntaxError, 2, 9, None),
    ("    x = clip(g, c=1)\n    return x, m\n", ProgramSyntaxError, 2, 9, "clip"),
    ("    x = sign(*g)\n    return x, m\n", ProgramSyntaxError, 2, 9, "sign"),
    ("    g = g * 2\n    return g, m\n", ProgramSyntaxError, 2, 5, "g"),
    ("    g += 1\n    return g, m\n", ProgramSyntaxError, 2, 5, "g"),
    ("    lr = 1\n    return g, m\n", ProgramSyntaxError, 2, 5, "lr"),
    ("    sqrt = g\n    return g, m\n", ProgramSyntaxError, 2, 5, "sqrt"),
    ("    x = 'text'\n    return g, m\n", ProgramSyntaxError, 2, 9, None),
    ("    x = True\n    return g, m\n", ProgramSyntaxError, 2, 9, None),
    ("    x = 1j\n    return g, m\n", ProgramSyntaxError, 2, 9, None),
    ("    x = g if m else w\n    return g, m\n", ProgramSyntaxError, 2, 9, None),
    ("    x = g >= m\n    return g, m\n", ProgramSyntaxError, 2, 9, None),
    ("    x = 0 < g < 1\n    return g, m\n", ProgramSyntaxError, 2, 9, None),
    ("    x = g @ m\n    return g, m\n", ProgramSyntaxError, 2, 9, None),
    ("    x = g // m\n    return g, m\n", ProgramSyntaxError, 2, 9, None),
    ("    x = not g\n    return g, m\n", ProgramSyntaxError, 2, 9, None),
    ("    x = [g]\n    return g, m\n", ProgramSyntaxError, 2, 9, None),
    ("    x, y = g, g\n    return g, m\n", ProgramSyntaxError, 2, 5, None),
    ("    x = y = g\n    return g, m\n", ProgramSyntaxError, 2, 5, None),
    ("    x: float = 1\n    return g, m\n", ProgramSyntaxError, 2, 5, None),
    ("    x = g\n    x //= 2\n    return g, m\n", ProgramSyntaxError, 3, 5, None),
    ("    x = g * 1e999\n    return x, m\n", ProgramSyntaxError, 2, 13, None),
    ("    x = yield g\n    return g, m\n", ProgramSyntaxError, 2, 9, None),
    ("    x = sign(g)(1)\n    return g, m\n", ProgramSyntaxError, 2, 9, None),
    ("    def h():\n        pass\n    return g, m\n", ProgramSyntaxError, 2, 5, None),
    # whole texts: signatures and module shape
    ("def f(w):\n    return w\n", SignatureError, 1, 1, "g"),
    ("def f(w, g, *a):\n    return g\n", SignatureError, 1, 1, None),
    ("def f(w, g, *, a=1):\n    return g\n", SignatureError, 1, 1, None),
    ("def f(w, g, lr=1):\n    return g\n", SignatureError, 1, 13, "lr"),
    ("def f(w, g, sign):\n    return g\n", SignatureError, 1, 13, "sign"),
    ("def f(w, g, m, m):\n    return g, m, m\n", SignatureError, 1, 16, "m"),
    ("def f(w, g, a=None):\n    return g\n", SignatureError, 1, 15, "a"),
    ("def f(w, g, a=1 + 1):\n    return g\n", SignatureError, 1, 15, "a"),
    ("def f(w, g, a=1e999):\n    return g\n", ProgramSyntaxError, 1, 15, None),
    ("def f(w: float, g):\n    return g\n", SignatureError, 1, 7, None),
    ("@dec\ndef f(w, g):\n    return g\n", ProgramSyntaxError, 2, 1, None),
    ("def f(w, g) -> float:\n    return g\n", ProgramSyntaxError, 1, 1, None),
    ("async def f(w, g):\n    return g\n", ProgramSyntaxError, 1, 1, None),
    ("import os\n", ProgramSyntaxError, 1, 1, None),
    ("def f(w, g):\n    return g\ndef k(w, g):\n    return g\n", ProgramSyntaxError, 1, 1, None),
    ("def f(w, g):\n    return g +\n", ProgramSyntaxError, 2, 15, None),
    ("def f(w, g):\n  return g\n    x = 1\n", ProgramSyntaxError, 3, 4, None),  # as Python
]


@pytest.mark.parametrize("text, error, line, col, name", BAD)
def test_malformed_program_raises_a_located_error(text, error, line, col, name):
    if not text.startswith(("def", "async", "@", "import")):
        text = HEAD + text
    with pytest.raises(error) as info:
        P(text)
    err = info.value
    assert type(err) is error
    assert (err.line, err.col, err.name) == (line, col, name), str(err)
    assert str(err).startswith(f"line {line}, column {col}: ")


@pytest.mark.parametrize("text", ["", "   \n", "# nothing\n", "'just a docstring'\n"])
def test_empty_program_is_an_error(text):
    with pytest.raises(ProgramSyntaxError, match="exactly one 'def'"):
        P(text)


@pytest.mark.parametrize("value", [None, b"def f(w, g):\n    return g\n", 3, ["def"]])
def test_non_text_is_an_error(value):
    with pytest.raises(ProgramSyntaxError, match="must be a str"):
        P(value)


def test_every_error_is_a_program_error():
    for cls in (ArityError, GradientIndependenceError, ProgramSyntaxError, ShapeError,
                SignatureError, UnknownNameError, UnknownOpError):
        assert issubclass(cls, ProgramError)


# ------------------------------------------------------------------ inference

ADAFACTOR_LIKE = """\
def fac(w, g, r, c, lr):
    r = interp(r, row_mean(g * g), 0.1)
    c = interp(c, col_mean(g * g), 0.1)
    v = r * c / mean(r)
    return lr * g / sqrt(v + 1e-30), r, c
"""


@pytest.mark.parametrize(
    "text, shapes",
    [
        (ADAFACTOR_LIKE, {"r": ("R", 1), "c": (1, "C")}),
        ("def f(w, g, m, v, lr):\n    m = interp(m, g, 0.1)\n    v = interp(v, norm(g), 0.1)\n"
         "    return lr * m / v, m, v\n", {"m": ("R", "C"), "v": (1, 1)}),
        ("def f(w, g, s, lr):\n    s = interp(s, matmul(transpose(g), g), 0.1)\n"
         "    return lr * matmul(g, s), s\n", {"s": ("C", "C")}),
        ("def f(w, g, s, lr):\n    s = interp(s, matmul(g, transpose(g)), 0.1)\n"
         "    return lr * matmul(s, g), s\n", {"s": ("R", "R")}),
        ("def f(w, g, n, lr, step):\n    n = n + 1\n    return lr * g * n, n\n", {"n": (1, 1)}),
        # the shape reaches the last slot through a chain of six others
        ("def f(w, g, a, b, c, d, e, k, lr):\n    return lr * k, g, a, b, c, d, e\n",
         dict.fromkeys("abcdek", ("R", "C"))),
        # a row moment feeding a matrix moment across steps
        ("def f(w, g, r, s, lr):\n    s = s + matmul(r, transpose(r))\n"
         "    r = row_mean(g)\n    return lr * matmul(s, g), r, s\n",
         {"r": ("R", 1), "s": ("R", "R")}),
    ],
)
def test_slot_shapes(text, shapes):
    assert infer(P(text)).slot_shapes == shapes


def test_zoo_adafactor_slots_are_factored():
    if "adafactor" not in ZOO:
        pytest.skip("no adafactor in the zoo")
    assert infer(P(ZOO["adafactor"])).slot_shapes == {"r": ("R", 1), "c": (1, "C")}


def test_update_may_reach_the_gradient_through_state():
    # delayed SGD: the update is last step's gradient
    typing = infer(P("def f(w, g, m, lr):\n    return lr * m, g\n"))
    assert {"g", "m", "lr"} <= typing.update_deps
    # two slots deep
    P("def f(w, g, a, b, lr):\n    return lr * b, g, a\n")


@pytest.mark.parametrize(
    "text, shape",
    [
        ("def f(w, g):\n    return row_mean(g)\n", ("R", 1)),
        ("def f(w, g):\n    return col_mean(g)\n", (1, "C")),
        ("def f(w, g):\n    return global_norm(g)\n", (1, 1)),
        ("def f(w, g):\n    return g * norm(w)\n", ("R", "C")),
    ],
)
def test_update_of_reduced_shape_broadcasts(text, shape):
    assert infer(P(text)).update.shape == shape


def test_uniformity():
    env = infer(P("def f(w, g, lr, step, b=0.9):\n    a = 1 - b ** step\n    n = global_norm(g)\n"
                  "    q = norm(g)\n    return lr * g / a / n / q\n")).env
    assert env["a"].uniform and env["n"].uniform and not env["q"].uniform


def test_program_views():
    p = P("def f(w, g, m, lr, step, h, beta=0.9, eps=1e-8):\n"
          "    m = interp(m, g / (h + eps), 1 - beta)\n    return lr * m, m\n")
    assert p.slots == ("m",)
    assert p.inputs == ("w", "g", "lr", "step", "h")
    assert p.hyperparameters == {"beta": 0.9, "eps": 1e-8}
    assert len(p) == 1
    assert p.reads_hessian


@pytest.mark.parametrize(
    "text, reads",
    [
        ("def f(w, g, h, lr):\n    return lr * g / h\n", True),
        ("def f(w, g, h, lr):\n    x = h * 2\n    return lr * g\n", False),  # dead read
        ("def f(w, g, h, lr):\n    return lr * g\n", False),  # in the signature only
        ("def f(w, g, v, h, lr):\n    v = interp(v, h, 0.1)\n    return lr * g / v, v\n", True),
        ("def f(w, g, v, h, lr):\n    v = interp(v, h, 0.1)\n    return lr * g, v\n", False),
    ],
)
def test_reads_hessian(text, reads):
    assert P(text).reads_hessian is reads


def test_zoo_hessian_readers():
    for name, text in ZOO.items():
        assert P(text).reads_hessian == (name in {"adahessian", "sophiah"}), name


def test_with_hyper():
    p = P("def f(w, g, m, lr, beta=0.9, eps=1e-8):\n    m = interp(m, g, 1 - beta)\n"
          "    return lr * m / (abs(m) + eps), m\n")
    q = p.with_hyper(beta=0.5)
    assert q.hyperparameters == {"beta": 0.5, "eps": 1e-8}
    assert p.hyperparameters == {"beta": 0.9, "eps": 1e-8}  # unchanged
    assert q.body == p.body and q.params == p.params and q != p
    assert P(str(q)) == q
    assert q.hash != p.hash and q.fingerprint() != p.fingerprint()
    assert p.with_hyper(beta=0.9) == p
    with pytest.raises(KeyError, match="gamma"):
        p.with_hyper(gamma=1.0)
    with pytest.raises(ValueError, match="finite"):
        p.with_hyper(eps=float("inf"))


# ------------------------------------------------------------------ dead code


@pytest.mark.parametrize(
    "text, live",
    [
        (  # dead statement, dead slot, unused hyperparameter and input
            "def f(w, g, m, z, lr, step, b=0.9, k=3.0):\n    junk = exp(g) * step\n"
            "    m = interp(m, g, 1 - b)\n    z = z + junk * k\n    u = lr * m\n"
            "    return u, m, z\n",
            "def f(g, m, lr, b=0.9):\n    m = interp(m, g, 1 - b)\n    u = lr * m\n"
            "    return u, m\n",
        ),
        (  # a slot that only feeds another live slot stays; one feeding a dead slot goes
            "def f(w, g, a, b, c, d, lr):\n    a = interp(a, g, 0.1)\n    b = interp(b, a, 0.1)\n"
            "    c = c + d\n    d = g\n    return lr * b, a, b, c, d\n",
            "def f(g, a, b, lr):\n    a = interp(a, g, 0.1)\n    b = interp(b, a, 0.1)\n"
            "    return lr * b, a, b\n",
        ),
        (  # an overwritten value is dead, the value it was overwritten with is not
            "def f(w, g, lr):\n    x = sqrt(g)\n    x = g * 2\n    y = x\n    return lr * y\n",
            "def f(g, lr):\n    x = g * 2\n    y = x\n    return lr * y\n",
        ),
        (  # a slot read before it is reassigned is live through the body
            "def f(w, g, m, lr):\n    u = lr * m\n    m = g\n    return u, m\n",
            "def f(g, m, lr):\n    u = lr * m\n    m = g\n    return u, m\n",
        ),
    ],
)
def test_eliminate_dead_code(text, live):
    p = P(text)
    q = eliminate_dead_code(p)
    assert q == P(live)
    assert P(str(q)) == q
    assert q.hash == p.hash
    assert q.fingerprint() == p.fingerprint()


def test_live_sets():
    p = P("def f(w, g, m, v, z, h, lr, b=0.9):\n    m = interp(m, g, 1 - b)\n"
          "    v = interp(v, h, 0.1)\n    z = z + v\n    return lr * m, m, v, z\n")
    assert live_slots(p) == {"m"}
    assert live_inputs(p) == {"g", "m", "lr", "b"}


def test_zoo_programs_have_no_dead_code():
    for name, text in ZOO.items():
        p = P(text)
        q = eliminate_dead_code(p)
        assert q.body == p.body and q.slots == p.slots, name


# ------------------------------------------------------------------ structural hash

BASE = """\
def base(w, g, m, lr, beta=0.9, wd=0.01):
    m = interp(m, g, 1 - beta)
    u = lr * (m / (abs(m) + 1e-8) + wd * w)
    return u, m
"""

SAME = [
    # every name changed
    """def other(w, g, mom, lr, b=0.9, decay=0.01):
    mom = interp(mom, g, 1 - b)
    step_ = lr * (mom / (abs(mom) + 1e-8) + decay * w)
    return step_, mom
""",
    # dead code, dead slot, unused hyperparameter, docstring
    """def base(w, g, m, junk, lr, step, beta=0.9, wd=0.01, unused=3.0):
    "Documented."
    t = exp(g) * unused
    m = interp(m, g, 1 - beta)
    junk = junk + t
    u = lr * (m / (abs(m) + 1e-8) + wd * w)
    return u, m, junk
""",
    # commutative operand order, one statement inlined into another
    """def base(w, g, m, lr, beta=0.9, wd=0.01):
    m = interp(m, g, 1 - beta)
    return ((w * wd) + m / (1e-8 + abs(m))) * lr, m
""",
]

DIFFERENT = [
    BASE.replace("1e-8", "1e-7"),  # a constant
    BASE.replace("beta=0.9", "beta=0.95"),  # a hyperparameter default
    BASE.replace("wd=0.01", "wd=0.02"),
    BASE.replace("abs(m)", "sqrt(m * m)"),  # a live statement (same value, other way)
    BASE.replace("1 - beta", "beta"),
    BASE.replace("interp(m, g, 1 - beta)", "interp(g, m, 1 - beta)"),  # non-commutative order
    BASE.replace("m / (abs(m) + 1e-8)", "(abs(m) + 1e-8) / m"),
    BASE.replace("lr * (", "lr - ("),
    BASE.replace("wd * w", "wd * g"),  # another input
]


@pytest.mark.parametrize("text", SAME)
def test_hash_is_invariant(text):
    assert P(text).hash == P(BASE).hash


@pytest.mark.parametrize("text", DIFFERENT)
def test_hash_changes(text):
    assert text != BASE
    assert P(text).hash != P(BASE).hash


@pytest.mark.parametrize(
    "a, b, same",
    [
        ("a * b", "b * a", True),
        ("a + b", "b + a", True),
        ("maximum(a, b)", "maximum(b, a)", True),
        ("minimum(a, b)", "minimum(b, a)", True),
        ("a - b", "b - a", False),
        ("a / b", "b / a", False),
        ("a ** b", "b ** a", False),
        ("gt(a, b)", "gt(b, a)", False),
        ("clip(a, b)", "clip(b, a)", False),
        ("matmul(matmul(a, transpose(b)), g)", "matmul(matmul(b, transpose(a)), g)", False),
        ("-a", "0 - a", False),
        ("a * 2", "a * 2.0", True),
    ],
)
def test_hash_operand_order(a, b, same):
    def prog(e):
        return P(f"def f(w, g):\n    a = g + 1\n    b = w * g\n    return {e}\n")

    assert (prog(a).hash == prog(b).hash) is same


def test_hash_tells_two_knobs_from_one():
    two = ("def f(w, g, m, v, lr, b1=0.9, b2=0.9):\n    m = interp(m, g, 1 - b1)\n"
           "    v = interp(v, g * g, 1 - b2)\n    return lr * m / sqrt(v + 1), m, v\n")
    one = two.replace("1 - b2", "1 - b1")
    renamed = two.replace("b1", "x").replace("b2", "y")
    assert P(one).hash != P(two).hash
    assert P(renamed).hash == P(two).hash


def test_hash_is_stable_text():
    h = P(BASE).hash
    assert isinstance(h, str) and len(h) == 32 and int(h, 16) >= 0
    assert P(BASE).hash == h


def test_zoo_hashes_are_distinct():
    hashes = {P(t).hash: n for n, t in ZOO.items()}
    assert len(hashes) == len(ZOO)


# ------------------------------------------------------------------ fingerprint

EQUIVALENT = [
    ("def f(w, g, m, lr, t=0.1):\n    m = interp(m, g, t)\n    return lr * m, m\n",
     "def f(w, g, m, lr, t=0.1):\n    m = m + t * (g - m)\n    return lr * m, m\n"),
    ("def f(w, g, lr):\n    return lr * g * g\n",
     "def f(w, g, lr):\n    return lr * square(g)\n"),
    ("def f(w, g, lr):\n    return lr * g / sqrt(abs(g) + 1)\n",
     "def f(w, g, lr):\n    return lr * g * rsqrt(1 + abs(g))\n"),
    ("def f(w, g, lr):\n    return lr * sign(g)\n",
     "def f(w, g, lr):\n    return lr * (gt(g, 0) - lt(g, 0))\n"),
    ("def f(w, g, lr):\n    return lr * g / norm(g)\n",
     "def f(w, g, lr):\n    return lr * g / sqrt(sum(g * g))\n"),
    # a C x C matrix moment, two spellings
    ("def f(w, g, s, lr):\n    s = interp(s, matmul(transpose(g), g), 0.1)\n"
     "    return lr * matmul(g, s), s\n",
     "def f(w, g, s, lr):\n    s = 0.9 * s + 0.1 * matmul(transpose(g), g)\n"
     "    return lr * matmul(g, s), s\n"),
    # AdamW's bias correction folded differently
    ("def f(w, g, m, v, lr, step, b1=0.9, b2=0.999):\n    m = interp(m, g, 1 - b1)\n"
     "    v = interp(v, g * g, 1 - b2)\n"
     "    return lr * (m / (1 - b1 ** step)) / (sqrt(v / (1 - b2 ** step)) + 1e-8), m, v\n",
     "def f(w, g, m, v, lr, step, b1=0.9, b2=0.999):\n    m = b1 * m + (1 - b1) * g\n"
     "    v = b2 * v + (1 - b2) * square(g)\n    c = sqrt(1 - b2 ** step) / (1 - b1 ** step)\n"
     "    return lr * c * m / (sqrt(v) + 1e-8 * sqrt(1 - b2 ** step)), m, v\n"),
]

DIFFERENT_BEHAVIOUR = [
    ("def f(w, g, lr):\n    return lr * g\n", "def f(w, g, lr):\n    return lr * sign(g)\n"),
    ("def f(w, g, m, lr, t=0.1):\n    m = interp(m, g, t)\n    return lr * m, m\n",
     "def f(w, g, m, lr, t=0.2):\n    m = interp(m, g, t)\n    return lr * m, m\n"),
    ("def f(w, g, m, lr):\n    m = interp(m, g, 0.1)\n    return lr * m, m\n",
     "def f(w, g, m, lr):\n    m = interp(g, m, 0.1)\n    return lr * m, m\n"),
    ("def f(w, g, lr):\n    return lr * g\n", "def f(w, g, h, lr):\n    return lr * g / h\n"),
    ("def f(w, g, lr):\n    return lr * g / norm(g)\n",
     "def f(w, g, lr):\n    return lr * g / global_norm(g)\n"),
    ("def f(w, g, lr):\n    return lr * row_mean(g)\n",
     "def f(w, g, lr):\n    return lr * col_mean(g)\n"),
]


@pytest.mark.parametrize("a, b", EQUIVALENT)
def test_fingerprint_equal_for_equivalent_programs(a, b):
    pa, pb = P(a), P(b)
    assert pa.fingerprint() == pb.fingerprint()


@pytest.mark.parametrize("a, b", DIFFERENT_BEHAVIOUR)
def test_fingerprint_differs_for_different_behaviour(a, b):
    assert P(a).fingerprint() != P(b).fingerprint()


def test_fingerprint_is_deterministic_and_sees_later_steps():
    a = P("def f(w, g, m, lr):\n    m = interp(m, g, 0.5)\n    return lr * m, m\n")
    b = P("def f(w, g, m, lr):\n    m = interp(m, g, 0.5)\n    return lr * g * 0.5, m\n")
    assert a.fingerprint() == a.fingerprint()
    assert a.fingerprint(steps=(1,)) == b.fingerprint(steps=(1,))  # the first step is the same
    assert a.fingerprint() != b.fingerprint()


def _nadam(mu="beta1 * (1 - 0.5 * 0.96 ** (step * momentum_decay))", extra="",
           late_mu=False) -> str:
    """The zoo's NAdam with ``mu`` spelled otherwise, an ``extra`` statement, or its
    schedule written after the moments (``late_mu``)."""
    schedule = (f"    mu = {mu}\n"
                "    mu_next = beta1 * (1 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))\n"
                "    mu_prod = where(step - 1, mu_prod, 1) * mu\n")
    moments = "    m = interp(m, g, 1 - beta1)\n    v = beta2 * v + (1 - beta2) * g * g\n"
    return ("def nadam(w, g, m, v, mu_prod, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, "
            "momentum_decay=0.004):\n"
            + (moments + schedule if late_mu else schedule + moments) + extra
            + "    denom = sqrt(v / (1 - beta2 ** step)) + eps\n"
            "    update = (lr * (1 - mu) / (1 - mu_prod) * g / denom\n"
            "              + lr * mu_next / (1 - mu_prod * mu_next) * m / denom)\n"
            "    return update, m, v, mu_prod\n")


# Two NAdam variants of the transfer-cut search (eps 1e-8): one behaviour for three steps
_CUT = ("def nadam(w, g, m, v, mu_prod, lr, step, s1, beta1=0.9, beta2=0.999, eps=1e-08, "
        "wd=0, momentum_decay=0.004):\n"
        "    mu = beta1 * (0.6878 - 0.5 * 0.8261 ** (step * momentum_decay))\n{}"
        "    mu_prod = where(mu - 0.4102, mu_prod, 1) * mu\n"
        "    m = interp(m, g, 1 - beta1)\n"
        "    v = beta2 * v + (1 - beta2) * g * g\n"
        "    denom = sqrt(v / (1 - beta2 ** step)) + eps\n"
        "    update = lr * (0.6698 - mu) / (1 - mu_prod) * g / denom"
        " + lr * beta1 / (1 - mu_prod * beta1) * m / denom\n"
        "    return update, m, v, mu_prod, s1\n")

# (a, b, same behaviour): every pair is one behaviour under the three-step probe
PROBE_PAIRS = [
    (_nadam(), _nadam(late_mu=True), True),  # statements reordered
    (_nadam(), _nadam(mu="(1 - 0.5 * 0.96 ** (momentum_decay * step)) * beta1"), True),  # a*b
    (_nadam(), _nadam(extra="    junk = sqrt(step * momentum_decay)\n"), True),  # dead code
    # a step decay after 100 steps
    ("def f(w, g, lr, step):\n    return lr * g\n",
     "def f(w, g, lr, step):\n    return lr * g * where(lt(step, 100), 1, 0.1)\n", False),
    # mu_prod scaled by mu once more each step (interp(0, p, mu) = mu * p)
    (_CUT.format(""), _CUT.format("    mu_prod = interp(wd, mu_prod, mu)\n"), False),
]


@pytest.mark.parametrize("a, b, same", PROBE_PAIRS)
def test_fingerprint_probes_late_steps(a, b, same):
    """Equal fingerprints for equal behaviour; schedules that part only after three
    steps part under the default probe, though not under the three-step one of runs
    stored before it (``PROBE_STEPS_V1``)."""
    pa, pb = P(a), P(b)
    assert pa.fingerprint(PROBE_STEPS_V1) == pb.fingerprint(PROBE_STEPS_V1)
    assert (pa.fingerprint() == pb.fingerprint()) is same


def test_a_step_counter_in_state_is_the_step_input_only_on_consecutive_steps():
    """Training calls a program at steps 1, 2, 3, ...: there a counter slot is ``step``.
    The default probe jumps to step 30 after three calls, where the counter reads 4: the
    two part (a duplicate training, never a reused fitness; docs/SEARCH.md)."""
    a = P("def f(w, g, n, lr):\n    n = n + 1\n    return lr * g * n, n\n")
    b = P("def f(w, g, lr, step):\n    return lr * g * step\n")
    assert a.fingerprint(range(1, 7)) == b.fingerprint(range(1, 7))
    assert a.fingerprint(PROBE_STEPS_V1) == b.fingerprint(PROBE_STEPS_V1)
    assert a.fingerprint() != b.fingerprint()


def test_zoo_fingerprints_are_distinct():
    prints = {P(t).fingerprint(): n for n, t in ZOO.items()}
    assert len(prints) == len(ZOO)


# ------------------------------------------------------------------ sympy view


def _sym(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def test_to_sympy_momentum_by_hand():
    p = P("def sgdm(w, g, buf, lr, mu=0.9, wd=0.0):\n    d = g + wd * w\n"
          "    buf = mu * buf + d\n    return lr * buf, buf\n")
    out = to_sympy(p)
    g, w, lr, mu, wd, b0 = (_sym(n) for n in ("g", "w", "lr", "mu", "wd", "buf_{t-1}"))
    assert set(out) == {"update", "buf"}
    assert sp.simplify(out["buf"] - (mu * b0 + g + wd * w)) == 0
    assert sp.simplify(out["update"] - lr * (mu * b0 + g + wd * w)) == 0
    assert sp.simplify(out["update"] - lr * (mu * b0 + g)) != 0  # not vacuous


def test_to_sympy_adamw_by_hand():
    out = to_sympy(P(ZOO["adamw"]))
    g, w, lr, t, b1, b2, eps, wd = (_sym(n) for n in
                                    ("g", "w", "lr", "step", "beta1", "beta2", "eps", "wd"))
    m0, v0 = _sym("m_{t-1}"), _sym("v_{t-1}")
    m = b1 * m0 + (1 - b1) * g
    v = b2 * v0 + (1 - b2) * g**2
    update = lr * (m / (1 - b1**t) / (sp.sqrt(v / (1 - b2**t)) + eps) + wd * w)
    assert sp.simplify(out["m"] - m) == 0
    assert sp.simplify(out["v"] - v) == 0
    assert sp.simplify(sp.together(out["update"] - update)) == 0
    # hyperparameters are symbols: other defaults give the same formulas
    again = to_sympy(P(ZOO["adamw"]).with_hyper(beta1=0.5, eps=1e-3), simplified=False)
    assert again == to_sympy(P(ZOO["adamw"]), simplified=False)
    assert out["update"].free_symbols == {g, w, lr, t, b1, b2, eps, wd, m0, v0}


def test_to_sympy_refuses_a_slot_named_update():
    p = P("def f(w, g, update, lr):\n    update = interp(update, g, 0.1)\n"
          "    return lr * update, update\n")
    with pytest.raises(ValueError, match="update"):
        to_sympy(p)
    assert "update_{t} = " in formula(p)


def test_formula_lines():
    lines = formula(P(ZOO["adamw"])).splitlines()
    assert lines[0] == "m_{t} = m_{t-1} + (1 - beta1)*(g - m_{t-1})"
    assert lines[1].startswith("v_{t} = ")
    assert lines[2].startswith("update = ") and "m_{t}" in lines[2] and "m_{t-1}" not in lines[2]
    assert lines[3] == "w <- w - update"
    # a slot read before its reassignment is its old value in the update
    lines = formula(P("def f(w, g, m, lr):\n    u = lr * m\n    m = g\n    return u, m\n"))
    assert lines.splitlines()[:2] == ["m_{t} = g", "update = lr*m_{t-1}"]
    # a slot's new value returned under another name, and a slot never reassigned
    lines = formula(P("def f(w, g, m, c, lr):\n    n = interp(m, g, 0.5)\n"
                      "    return lr * n * c, n, c\n")).splitlines()
    assert lines[:2] == ["m_{t} = 0.5*g + 0.5*m_{t-1}", "c_{t} = c_{t-1}"]
    assert lines[2] == "update = c_{t-1}*lr*(0.5*g + 0.5*m_{t-1})"


@pytest.mark.parametrize("name", sorted(ZOO))
def test_formula_and_latex_of_every_zoo_program(name):
    p = P(ZOO[name])
    text = formula(p)
    assert text.splitlines()[-1] == "w <- w - update"
    assert len(text.splitlines()) == len(p.slots) + 2
    tex = latex(p)
    assert tex.startswith("\\begin{aligned}\n") and tex.endswith("\n\\end{aligned}")
    assert tex.count("{") == tex.count("}") and tex.count("\\left") == tex.count("\\right")
    assert "\\Delta w_{t} &= " in tex
    for s in p.slots:
        assert f"{s}_{{t}} = " in text


def _numpy_functions():
    """NumPy meanings of the sympy forms' uninterpreted functions, for one 2-D tensor."""
    return {
        "norm": lambda x: np.sqrt(np.sum(np.square(x))),
        "rms": lambda x: np.sqrt(np.mean(np.square(x))),
        "mean": np.mean, "sum": np.sum, "max_abs": lambda x: np.max(np.abs(x)),
        "std": np.std, "numel": lambda x: float(np.size(x)),
        "row_mean": lambda x: np.mean(np.asarray(x, dtype=float), axis=1, keepdims=True),
        "col_mean": lambda x: np.mean(np.asarray(x, dtype=float), axis=0, keepdims=True),
        "row_norm": lambda x: np.sqrt(np.sum(np.square(x), axis=1, keepdims=True)),
        "col_norm": lambda x: np.sqrt(np.sum(np.square(x), axis=0, keepdims=True)),
        "global_norm": lambda x: np.sqrt(np.sum(np.square(x))),
        "global_rms": lambda x: np.sqrt(np.mean(np.square(x))),
        "global_mean": np.mean, "global_max_abs": lambda x: np.max(np.abs(x)),
        "Max": lambda *a: functools.reduce(np.maximum, a),
        "Min": lambda *a: functools.reduce(np.minimum, a),
    }


@pytest.mark.parametrize("name", sorted(ZOO))
def test_to_sympy_computes_what_the_optimizer_does(name):
    """Three steps of ProgramOptimizer on a 3 x 4 parameter equal the sympy formulas
    evaluated with NumPy (hyperparameters at their defaults)."""
    p = P(ZOO[name])
    if p.reads_hessian or any(isinstance(n, Call) and n.op in ("orthogonalize", "matmul",
                                                                "transpose")
                              for s in p.body for n in walk(s.expr)):
        pytest.skip("reads h or uses matrix products")
    out = to_sympy(p, simplified=False)
    names = ["w", "g", "lr", "step", *[f"{s}_{{t-1}}" for s in p.slots], *dict(p.hyper)]
    args = [_sym(n) for n in names]
    funcs = {k: sp.lambdify(args, e, modules=[_numpy_functions(), "numpy"])
             for k, e in out.items()}
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 4))
    param = torch.nn.Parameter(torch.tensor(w0))
    opt = ProgramOptimizer([param], p, lr=0.05)
    w, state = w0.copy(), {s: np.zeros((3, 4)) for s in p.slots}
    for step in (1, 2, 3):
        g = rng.standard_normal((3, 4)) + w
        param.grad = torch.tensor(g)
        opt.step()
        values = [w, g, 0.05, step, *[state[s] for s in p.slots], *dict(p.hyper).values()]
        values = [np.float64(v) if np.isscalar(v) else v for v in values]  # x / 0 -> inf
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            new = {k: np.broadcast_to(f(*values), (3, 4)) for k, f in funcs.items()}
        w = w - new["update"]
        state = {s: np.array(new[s]) for s in p.slots}
        np.testing.assert_allclose(param.detach().numpy(), w, rtol=1e-9, atol=1e-12)
