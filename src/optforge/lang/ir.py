"""The typed IR of update rules, and its printer.

A program is a straight-line function::

    def adamw(w, g, m, v, lr, step, beta1=0.9, beta2=0.999, eps=1e-8, wd=0.01):
        m = interp(m, g, 1 - beta1)
        ...
        return update, m, v

Positional parameters are the reserved inputs (:data:`INPUTS`) and state
slots (every other positional name, zero-initialised); keyword parameters
with numeric defaults are hyperparameters. The first returned value is the
update (``w <- w - update``), the rest are the new slots in signature order.

Expressions are trees of :class:`Var`, :class:`Const` and :class:`Call`
(operators are calls of ``add``, ``sub``, ``mul``, ``div``, ``pow``, ``neg``,
``gt``, ``lt``). Source positions ride along but take no part in equality.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import ops

INPUTS = ("w", "g", "lr", "step", "h")
"""Reserved inputs: parameter, gradient, scheduled learning rate, 1-based step
count, Hessian-diagonal estimate (computed only for programs that read it)."""


@dataclass(frozen=True)
class Var:
    name: str
    line: int = field(default=0, compare=False, repr=False)
    col: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class Const:
    value: float
    line: int = field(default=0, compare=False, repr=False)
    col: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class Call:
    op: str
    args: tuple[Expr, ...]
    line: int = field(default=0, compare=False, repr=False)
    col: int = field(default=0, compare=False, repr=False)


Expr = Var | Const | Call


@dataclass(frozen=True)
class Assign:
    target: str
    expr: Expr
    line: int = field(default=0, compare=False, repr=False)
    col: int = field(default=0, compare=False, repr=False)


class MissingProgramFile(FileNotFoundError, ValueError):
    """A program file that does not exist: an OS error and bad input (like io's
    UnsupportedOperation), so either kind of handler catches it."""


@dataclass(frozen=True)
class Program:
    """An update rule. Build one with :meth:`parse`; ``str()`` prints it back."""

    name: str
    params: tuple[str, ...]
    hyper: tuple[tuple[str, float], ...]
    body: tuple[Assign, ...]
    returns: tuple[Expr, ...]
    doc: str | None = field(default=None, compare=False)

    # ---- construction and views
    @classmethod
    def parse(cls, text: str) -> Program:
        """Parse and type-check program text; raises a ProgramError subclass."""
        from .infer import check
        from .parser import parse_program

        program = parse_program(text)
        check(program)
        return program

    @classmethod
    def read(cls, path: str | Path) -> tuple[Program, str]:
        """A program file, parsed (never imported), and its text; a ValueError naming the
        file when it is missing (:class:`MissingProgramFile`) or not a valid program."""
        from .errors import ProgramError

        path = Path(path)
        if not path.is_file():
            raise MissingProgramFile(f"program file {str(path)!r} does not exist")
        text = path.read_text()
        try:
            return cls.parse(text), text
        except ProgramError as err:
            raise ValueError(f"{path}: {err}") from None

    @property
    def slots(self) -> tuple[str, ...]:
        """State slots, in signature (and return) order."""
        return tuple(p for p in self.params if p not in INPUTS)

    @property
    def inputs(self) -> tuple[str, ...]:
        """Reserved inputs named in the signature."""
        return tuple(p for p in self.params if p in INPUTS)

    @property
    def hyperparameters(self) -> dict[str, float]:
        return dict(self.hyper)

    @property
    def reads_hessian(self) -> bool:
        from .canon import live_inputs

        return "h" in live_inputs(self)

    @property
    def hash(self) -> str:
        """Structural hash: invariant to names, dead code, commutative operand order."""
        from .canon import structural_hash

        return structural_hash(self)

    def fingerprint(self, steps: Sequence[int] | None = None) -> str:
        """Behavioural hash: rounded updates at the probe ``steps`` (default
        :data:`~optforge.lang.fingerprint.PROBE_STEPS`) on fixed random inputs."""
        from .fingerprint import PROBE_STEPS, fingerprint

        return fingerprint(self, steps=PROBE_STEPS if steps is None else steps)

    def with_hyper(self, **values: float) -> Program:
        """The same program with other hyperparameter defaults."""
        unknown = set(values) - set(self.hyperparameters)
        if unknown:
            raise KeyError(f"unknown hyperparameters {sorted(unknown)} for {self.name}")
        hyper = tuple((k, float(values.get(k, v))) for k, v in self.hyper)
        bad = [k for k, v in hyper if not math.isfinite(v)]
        if bad:
            raise ValueError(f"hyperparameters {bad} of {self.name} must be finite")
        return Program(self.name, self.params, hyper, self.body, self.returns, self.doc)

    def __len__(self) -> int:
        return len(self.body)

    def __str__(self) -> str:
        return to_source(self)


# ------------------------------------------------------------------ printer

_PREC = {"add": 1, "sub": 1, "mul": 2, "div": 2, "neg": 3, "pow": 4, "gt": 0, "lt": 0}


def format_number(value: float) -> str:
    """Shortest text that parses back to the same float (integers without ``.0``)."""
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"constant {value} has no source form")
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def expr_source(e: Expr, parent: int = 0, right: bool = False) -> str:
    """Source text of an expression, with only the parentheses it needs.

    ``parent`` is the precedence the context demands, ``right`` whether ``e`` is
    the right operand of a binary operator (a negative constant there is
    parenthesised for readability: ``a - (-0.5)``).
    """
    if isinstance(e, Var):
        return e.name
    if isinstance(e, Const):
        text = format_number(e.value)
        # -c is one literal; it binds like unary minus (tighter than * and /, looser than **)
        return f"({text})" if e.value < 0 and (parent >= _PREC["neg"] or right) else text
    op = ops.REGISTRY[e.op]
    if e.op in _PREC:
        prec = _PREC[e.op]
        if e.op == "neg":
            arg = e.args[0]
            if isinstance(arg, Const) and arg.value > 0:
                # "-0.5" would parse back as the single constant -0.5
                return f"neg({format_number(arg.value)})"
            text = f"-{expr_source(arg, prec)}"
        else:
            # pow is right-associative; the others are left-associative
            lp, rp = (prec + 1, prec) if e.op == "pow" else (prec, prec + 1)
            if e.op in ("gt", "lt"):
                lp, rp = 1, 1
            left = expr_source(e.args[0], lp)
            text = f"{left} {op.infix} {expr_source(e.args[1], rp, right=True)}"
        return f"({text})" if prec < parent else text
    return f"{e.op}({', '.join(expr_source(a) for a in e.args)})"


def to_source(p: Program) -> str:
    args = list(p.params) + [f"{k}={format_number(v)}" for k, v in p.hyper]
    lines = [f"def {p.name}({', '.join(args)}):"]
    if p.doc:
        lines.append(f"    {_doc_source(p.doc)}")
    lines += [f"    {s.target} = {expr_source(s.expr)}" for s in p.body]
    lines.append(f"    return {', '.join(expr_source(e) for e in p.returns)}")
    return "\n".join(lines) + "\n"


def _doc_source(doc: str) -> str:
    """A docstring literal: triple-quoted when that reads back verbatim, else repr()."""
    verbatim = (
        "\n" in doc and '"""' not in doc and "\\" not in doc and not doc.endswith('"')
        and all(line.isprintable() for line in doc.split("\n"))
    )
    return f'"""{doc}"""' if verbatim else repr(doc)


def walk(e: Expr):
    """Every node of an expression tree, parents first."""
    yield e
    if isinstance(e, Call):
        for a in e.args:
            yield from walk(a)


def names_read(e: Expr) -> set[str]:
    return {n.name for n in walk(e) if isinstance(n, Var)}
