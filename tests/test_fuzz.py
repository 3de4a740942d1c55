"""Fuzzing the parser: any input either parses or raises a ProgramError, quickly.

Inputs are random text, zoo programs mutated character by character and token
by token, random well-formed IR printed to text, and hand-made extremes (deep
nesting, huge numbers, null bytes, non-text). Whatever parses must also print
back to the same program and hash without error.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from importlib import resources

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optforge.lang import Program, ProgramError
from optforge.lang.canon import eliminate_dead_code
from optforge.lang.infer import infer
from optforge.lang.ir import Call, Const, Var
from optforge.lang.ops import REGISTRY
from optforge.lang.parser import MAX_SLOTS, MAX_SOURCE

# OPTFORGE_FUZZ_EXAMPLES=20000 for a long local run
FUZZ = settings(max_examples=int(os.environ.get("OPTFORGE_FUZZ_EXAMPLES", "300")),
                deadline=timedelta(seconds=2), suppress_health_check=[HealthCheck.too_slow])

ZOO = sorted(
    f.read_text() for f in (resources.files("optforge.zoo") / "programs").iterdir()
    if f.name.endswith(".py")
)

TOKENS = [
    *REGISTRY, "w", "g", "m", "v", "h", "lr", "step", "beta", "x", "def", "return", "import",
    "lambda", "if", "else", "for", "while", "yield", "await", "async", "class", "pass", "not",
    "and", "or", "is", "in", "None", "True", "(", ")", "[", "]", "{", "}", ",", ":", ";", ".",
    "=", "==", "+=", "-=", "*=", "/=", "**=", "//", "%", "@", "+", "-", "*", "/", "**", "<", ">",
    ">=", "<=", "~", "!", "'", '"', '"""', "\\", "#", "\n", "\n    ", "    ", "\t", "\r", "\x00",
    "\x0c", "0", "1", "-1", "0.5", "1e-8", "1e999", "10**10**10", "9" * 50, "0x1F", "1_0", "1j",
    "nan", "inf", "\u03b2", "\ud800", "__import__", "eval", "exec", "open", "os", "sys",
    "*args", "**kw", "f'{g}'", "...",
]


def check(text) -> Program | None:
    """Parse; anything but a ProgramError is a bug. A program that parses must print
    back to itself, and its hash and dead-code elimination must work."""
    try:
        p = Program.parse(text)
    except ProgramError as e:
        assert str(e)  # the message renders
        assert e.line >= 0 and e.col >= 0
        return None
    again = Program.parse(str(p))
    assert again == p
    assert again.hash == p.hash
    eliminate_dead_code(p)
    return p


# ------------------------------------------------------------------ random text


@FUZZ
@given(st.text(max_size=300))
def test_random_text(text):
    check(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map(" ".join))
def test_random_token_soup(text):
    check(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(
    lambda ts: "def f(w, g, m, lr, beta=0.9):\n    x = " + " ".join(ts) + "\n    return x, m\n"))
def test_random_expression_in_a_valid_frame(text):
    check(text)


# ------------------------------------------------------------------ mutated zoo programs


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(ZOO))
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["delete", "insert", "swap", "token", "dup_line",
                                     "drop_line", "splice"]))
        if kind == "delete" and text:
            j = draw(st.integers(i, min(len(text), i + 5)))
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(st.characters()) + text[i:]
        elif kind == "swap" and 0 < i < len(text):
            text = text[: i - 1] + text[i] + text[i - 1] + text[i + 1 :]
        elif kind == "token":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[i:]
        elif kind in ("dup_line", "drop_line"):
            lines = text.split("\n")
            k = draw(st.integers(0, len(lines) - 1))
            lines[k:k + 1] = [lines[k]] * 2 if kind == "dup_line" else []
            text = "\n".join(lines)
        elif kind == "splice":  # a piece of another zoo program
            other = draw(st.sampled_from(ZOO))
            a = draw(st.integers(0, len(other)))
            b = draw(st.integers(a, min(len(other), a + 80)))
            text = text[:i] + other[a:b] + text[i:]
    return text


@FUZZ
@given(mutated())
def test_mutated_zoo_programs(text):
    check(text)


def test_most_small_mutations_are_caught_or_harmless():
    """Not vacuous: the zoo programs themselves all parse."""
    for text in ZOO:
        assert check(text) is not None


# ------------------------------------------------------------------ random IR, printed


def _exprs():
    leaves = st.one_of(
        st.sampled_from([Var("g"), Var("w"), Var("m"), Var("lr"), Var("step"), Var("b")]),
        st.floats(allow_nan=False, allow_infinity=False).map(Const),
        st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1e-300, -1e300, 5e-324]).map(Const),
    )
    unary = [n for n, op in REGISTRY.items() if op.arity == 1
             and op.family in ("elementwise", "reduction", "global")]
    binary = [n for n, op in REGISTRY.items() if op.arity == 2 and op.family == "elementwise"]
    ternary = [n for n, op in REGISTRY.items() if op.arity == 3]

    def extend(children):
        return st.one_of(
            st.tuples(st.sampled_from(unary), children).map(lambda t: Call(t[0], (t[1],))),
            st.tuples(st.sampled_from(binary), children, children).map(
                lambda t: Call(t[0], t[1:])),
            st.tuples(st.sampled_from(ternary), children, children, children).map(
                lambda t: Call(t[0], t[1:])),
        )

    return st.recursive(leaves, extend, max_leaves=25)


@FUZZ
@given(_exprs(), _exprs(), st.floats(-10, 10, allow_nan=False))
def test_printed_ir_parses_back_to_itself(e1, e2, b):
    """Programs built as IR (as the search builds them) survive text and back."""
    update = Call("mul", (Var("g"), e1))
    p = Program("f", ("w", "g", "m", "lr", "step"), (("b", b),),
                  (),
                  (update, Call("interp", (Var("m"), e2, Const(0.1)))))
    text = str(p)
    again = Program.parse(text)
    assert again == p, text
    assert str(again) == text
    assert again.hash == p.hash


# ------------------------------------------------------------------ extremes

H = "def f(w, g):\n    return "


def _timed(text, seconds=10.0):
    """Parse within a time bound generous for a loaded 2-core CI machine: never hang."""
    start = time.perf_counter()
    result = check(text)
    assert time.perf_counter() - start < seconds
    return result


@pytest.mark.parametrize(
    "text",
    [
        H + "(" * 5000 + "g" + ")" * 5000,
        H + "-" * 90_000 + "g",
        H + "not " * 20_000 + "g",
        H + " + ".join(["g"] * 20_000),
        H + "**".join(["g"] * 30_000),
        H + "sign(" * 1000 + "g" + ")" * 1000,
        H + "sign(" * 150 + "g" + ")" * 150,  # deep, but within the limits
        H + "lambda: " * 10_000 + "g",
        H + "[" * 10_000 + "]" * 10_000,
        H + "g" + ".a" * 30_000,
        H + "g" + "[0]" * 30_000,
        H + "g" + "()" * 30_000,
        H + "<".join(["g"] * 30_000),
        H + ",".join(["g"] * 30_000),
        H + "g if g else " * 8000 + "g",
        H + "g * 1e999",
        H + "g * 10**10**10",
        H + "g * 10**10**10**10**10**10",
        H + "g * " + "9" * 5000,
        H + "g * " + "9" * 400,
        H + "g * 0." + "0" * 5000 + "1",
        H + "g * 1e-400",
        H + "g\x00",
        "\x00" * 1000,
        "def f(w, g):\r\n    return g\r\n",
        "def f(w, g):\n\treturn g\n",
        "\ufeffdef f(w, g):\n    return g\n",
        H + "g\ud800",
        "def f(w, g, " + ", ".join(f"s{i}" for i in range(MAX_SLOTS + 1)) + "):\n    return g\n",
        "def f(w, g, " + ", ".join(f"s{i}" for i in range(MAX_SLOTS)) + "):\n    return s63, g, "
        + ", ".join(f"s{i}" for i in range(MAX_SLOTS - 1)) + "\n",
        "def f(w, g):\n    x = g\n" + "    x += g\n" * 5000 + "    return x\n",
        " " * (MAX_SOURCE + 1),
        "def f(w, g):\n    return g\n" + "#" * MAX_SOURCE,
    ],
    ids=lambda t: repr(t[:40]) + f"..{len(t)}",
)
def test_extreme_text(text):
    _timed(text)


def test_huge_power_is_not_evaluated():
    p = _timed(H + "g * 10**10**10")
    assert p is not None and "10 ** 10 ** 10" in str(p)


def test_long_slot_chain_settles():
    """Each slot takes the previous one's shape: MAX_SLOTS rounds of inference."""
    slots = [f"s{i}" for i in range(MAX_SLOTS)]
    p = _timed(f"def f(w, g, {', '.join(slots)}):\n"
               f"    return {slots[-1]}, g, {', '.join(slots[:-1])}\n")
    assert p is not None
    assert set(infer(p).slot_shapes.values()) == {("R", "C")}


@pytest.mark.parametrize("value", [None, b"def f(w, g):\n    return g\n", 3, 2.5, ["x"],
                                   bytearray(b"x"), object(), memoryview(b"def")])
def test_non_text(value):
    with pytest.raises(ProgramError, match="must be a str"):
        Program.parse(value)


def test_str_subclass():
    class S(str):
        pass

    assert Program.parse(S(H + "g\n")) == Program.parse(H + "g\n")
