"""The sympy view of a program: its update rule as formulas.

Every op has a sympy form (``Op.sym``); running a program over sympy
expressions instead of tensors gives its math. Symbols:

* inputs ``w, g, lr, step, h`` (the parameter, gradient, learning rate, 1-based
  step count and Hessian-diagonal estimate of the current step);
* ``m_{t-1}`` for the value of state slot ``m`` before the step and ``m_{t}``
  for its new value;
* one symbol per hyperparameter, by name (never its default value).

All symbols are real. Per-tensor, matrix and global ops are uninterpreted
functions (``norm(x)``, ``row_mean(x)``, ``orth(x)``, ...), element-wise ops
their closed forms, so ``interp(m, g, 1 - beta1)`` reads
``m_{t-1} + (1 - beta1)*(g - m_{t-1})``.

:func:`to_sympy` gives each output fully in terms of these symbols;
:func:`formula` and :func:`latex` print the step one line per new slot, then the
update, which reads the new slot values ``m_{t}`` where the program does.

Budget. Written out in full, a formula repeats a variable's expression at each
use, so ``y = x * x; x = tanh(y) + y`` repeated k times is ``4^k`` terms long:
sympy would take minutes or overflow the stack. :func:`check_budget` counts that
size exactly from the IR (no sympy, so it is deterministic and instant); past
:data:`MAX_TERMS` the symbolic view raises :class:`FormulaTooLarge`, and
:func:`formula` and :func:`latex` fall back to the program's own text with a note
(and no LaTeX).
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.latex import LatexPrinter

from . import ops
from .ir import INPUTS, Call, Const, Expr, Program, Var

SIMPLIFY_MAX_OPS = 24
"""Expressions with more operations than this, or with piecewise parts (``Min``,
``Max``, ``Piecewise``, ``Heaviside``), are not simplified: sympy's ``simplify``
takes seconds on them and big update rules gain little."""
_COSTLY = (sp.Piecewise, sp.Heaviside, sp.Min, sp.Max)

MAX_TERMS = 500
"""Largest formula line, in terms written out in full (symbols, constants and
operations), that the symbolic view builds; the zoo's largest is RAdam's, 172."""


class FormulaTooLarge(ValueError):
    """The formula of a program is past :data:`MAX_TERMS` (see the module docstring)."""


def written_size(program: Program) -> int:
    """Terms of the largest line of the formula written out in full: ``1`` per symbol
    or constant, ``1 + the operands'`` per operation, a variable counting as its
    expression (exact Python integers: the count itself never overflows)."""
    size: dict[str, int] = dict.fromkeys([*program.params, *(k for k, _ in program.hyper)], 1)

    def of(e: Expr) -> int:
        if isinstance(e, Var):
            return size[e.name]
        if isinstance(e, Const):
            return 1
        return 1 + sum(of(a) for a in e.args)

    for stmt in program.body:
        size[stmt.target] = of(stmt.expr)
    return max([1, *size.values(), *(of(e) for e in program.returns)])


def check_budget(program: Program) -> None:
    """:class:`FormulaTooLarge` if the formula is past :data:`MAX_TERMS`."""
    n = written_size(program)
    if n > MAX_TERMS:
        raise FormulaTooLarge(f"written out, the formula of {program.name!r} would have {n} "
                              f"terms (more than {MAX_TERMS})")

_LATEX_INPUTS = {"w": "w_{t-1}", "g": "g_{t}", "lr": r"\eta_{t}", "step": "t", "h": "h_{t}"}


def input_symbol(name: str) -> sp.Symbol:
    """The symbol of a reserved input (``w``, ``g``, ``lr``, ``step``, ``h``)."""
    if name not in INPUTS:
        raise KeyError(f"{name!r} is not a reserved input ({', '.join(INPUTS)})")
    return sp.Symbol(name, real=True)


def slot_symbol(slot: str, new: bool = False) -> sp.Symbol:
    """``m_{t-1}`` (the value before the step) or, with ``new``, ``m_{t}``.

    The braces keep these apart from every identifier a program can use.
    """
    return sp.Symbol(f"{slot}_{{t}}" if new else f"{slot}_{{t-1}}", real=True)


def hyper_symbol(name: str) -> sp.Symbol:
    """The symbol of a hyperparameter."""
    return sp.Symbol(name, real=True)


def constant(value: float) -> sp.Expr:
    """A program constant: an exact integer where it is one, else a float."""
    if value == int(value) and abs(value) < 1e15:
        return sp.Integer(int(value))
    return sp.Float(value)


def expression(e: Expr, env: dict[str, sp.Expr]) -> sp.Expr:
    """Sympy form of an IR expression, variables looked up in ``env``."""
    if isinstance(e, Var):
        return env[e.name]
    if isinstance(e, Const):
        return constant(e.value)
    assert isinstance(e, Call)
    return ops.REGISTRY[e.op].sym(*(expression(a, env) for a in e.args))


def _initial_env(program: Program) -> dict[str, sp.Expr]:
    env: dict[str, sp.Expr] = {n: input_symbol(n) for n in program.inputs}
    env.update({s: slot_symbol(s) for s in program.slots})
    env.update({k: hyper_symbol(k) for k, _ in program.hyper})
    return env


def simplify(expr: sp.Expr) -> sp.Expr:
    """``sympy.simplify`` when that is cheap (see SIMPLIFY_MAX_OPS)."""
    if sp.count_ops(expr) > SIMPLIFY_MAX_OPS or expr.has(*_COSTLY):
        return expr
    return sp.simplify(expr)


def to_sympy(program: Program, simplified: bool = True) -> dict[str, sp.Expr]:
    """``{"update": ..., slot: new value, ...}`` in input, old-slot and hyperparameter symbols.

    >>> from optforge.lang import Program
    >>> p = Program.parse("def sgdm(w, g, m, lr, mu=0.9):\\n"
    ...                   "    m = mu * m + g\\n    return lr * m, m\\n")
    >>> to_sympy(p)["update"]
    lr*(g + m_{t-1}*mu)
    """
    if "update" in program.slots:
        raise ValueError(f"program {program.name!r} has a state slot named 'update', which "
                         "would clash with the update's key; rename the slot")
    check_budget(program)
    env = _initial_env(program)
    for stmt in program.body:
        env[stmt.target] = expression(stmt.expr, env)
    outs = [expression(e, env) for e in program.returns]
    if simplified:
        outs = [simplify(x) for x in outs]
    return dict(zip(("update", *program.slots), outs, strict=True))


def steps(program: Program) -> list[tuple[sp.Symbol | str, sp.Expr]]:
    """The step as ``(left side, expression)`` lines: each new slot value (in old
    values), then the update, reading new slot values ``m_{t}`` where the program
    reads a slot after its last assignment. The update's left side is ``"update"``;
    :class:`FormulaTooLarge` past the budget."""
    check_budget(program)
    returned = {}  # slot -> its return expression, when that is just the slot's name
    for s, e in zip(program.slots, program.returns[1:], strict=True):
        if isinstance(e, Var) and e.name == s:
            returned[s] = e
    last = {stmt.target: i for i, stmt in enumerate(program.body)}
    env = _initial_env(program)
    lines: list[tuple[sp.Symbol | str, sp.Expr]] = []
    done: set[str] = set()
    for i, stmt in enumerate(program.body):
        value = expression(stmt.expr, env)
        if stmt.target in returned and last[stmt.target] == i:
            lines.append((slot_symbol(stmt.target, new=True), value))
            env[stmt.target] = slot_symbol(stmt.target, new=True)
            done.add(stmt.target)
        else:
            env[stmt.target] = value
    for s, e in zip(program.slots, program.returns[1:], strict=True):
        if s not in done:
            lines.append((slot_symbol(s, new=True), expression(e, env)))
    lines.append(("update", expression(program.returns[0], env)))
    return lines


def formula(program: Program) -> str:
    """Plain-text formulas of one step, one line each, ending with ``w <- w - update``;
    past the budget, the program's text after a note saying why."""
    try:
        text = [f"{lhs} = {sp.sstr(rhs)}" for lhs, rhs in steps(program)]
    except (FormulaTooLarge, RecursionError) as err:
        why = err if isinstance(err, FormulaTooLarge) else "sympy's recursion limit was hit"
        return f"(no formula: {why}; the program itself:)\n{str(program).rstrip()}"
    text.append("w <- w - update")
    return "\n".join(text)


def _latex_names(program: Program) -> dict[sp.Symbol, str]:
    names = {input_symbol(n): _LATEX_INPUTS[n] for n in INPUTS}
    for s in program.slots:
        base = _symbol_latex(s)
        names[slot_symbol(s)] = f"{{{base}}}_{{t-1}}"
        names[slot_symbol(s, new=True)] = f"{{{base}}}_{{t}}"
    for k, _ in program.hyper:
        names[hyper_symbol(k)] = _symbol_latex(k)
    return names


class _Printer(LatexPrinter):
    """LaTeX with op names kept whole: ``\\operatorname{row\\_mean}``, not ``row`` sub ``mean``."""

    def _hprint_Function(self, func: str) -> str:
        if func in ops.REGISTRY or func == "orth":
            name = func.replace("_", r"\_")
            return rf"\operatorname{{{name}}}"
        return super()._hprint_Function(func)


def _symbol_latex(name: str) -> str:
    """Greek names and digit suffixes as sympy writes them (``beta1`` -> ``\\beta_{1}``),
    ``eps`` as epsilon, other multi-letter names upright-italic as one word."""
    eps = name == "eps" or (name.startswith("eps") and name[3:].isdigit())
    text = sp.latex(sp.Symbol("epsilon" + name[3:] if eps else name))
    if "_" in name and not eps:
        head, _, tail = name.partition("_")
        text = f"{_symbol_latex(head)}_{{\\mathrm{{{tail.replace('_', ' ')}}}}}"
    elif text == name and len(name) > 1:
        text = f"\\mathit{{{name}}}"
    return text


def latex(program: Program) -> str:
    r"""The step as a LaTeX ``aligned`` block: slots, ``\Delta w_{t}``, then
    ``w_{t} = w_{t-1} - \Delta w_{t}``; ``""`` past the budget (see :func:`formula`)."""
    names = _latex_names(program)
    printer = _Printer({"symbol_names": names})
    rows = []
    try:
        for lhs, rhs in steps(program):
            left = r"\Delta w_{t}" if lhs == "update" else names[lhs]
            rows.append(f"{left} &= {printer.doprint(rhs)}")
    except (FormulaTooLarge, RecursionError):
        return ""
    rows.append(r"w_{t} &= w_{t-1} - \Delta w_{t}")
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


__all__ = ["MAX_TERMS", "FormulaTooLarge", "check_budget", "formula", "hyper_symbol",
           "input_symbol", "latex", "slot_symbol", "steps", "to_sympy", "written_size"]
