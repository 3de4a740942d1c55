"""Program text -> IR, through Python's ``ast`` and a whitelist of nodes.

Nothing is ever evaluated: the parser reads the syntax tree and builds
:mod:`optforge.lang.ir` nodes. Anything outside the whitelist raises a
:class:`ProgramSyntaxError` naming its line and column.
"""

from __future__ import annotations

import ast
import math
import warnings

from . import ops
from .errors import (
    ArityError,
    ProgramError,
    ProgramSyntaxError,
    SignatureError,
    UnknownNameError,
    UnknownOpError,
)
from .ir import INPUTS, Assign, Call, Const, Expr, Program, Var, names_read

MAX_SOURCE = 100_000
MAX_DEPTH = 200
MAX_SLOTS = 64  # slot-shape inference may take a round per slot over the whole program

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
_CMPOPS = {ast.Gt: "gt", ast.Lt: "lt"}
_AUG_OK = tuple(_BINOPS)


def _where(node: ast.AST) -> dict:
    return {"line": getattr(node, "lineno", 0), "col": getattr(node, "col_offset", -1) + 1}


def _number(node: ast.AST) -> float | None:
    """The value of a numeric literal (an int or float, not a bool), else None."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        try:
            value = float(node.value)
        except OverflowError:
            raise ProgramSyntaxError("number too large", **_where(node)) from None
        if not math.isfinite(value):
            raise ProgramSyntaxError("constants must be finite", **_where(node))
        return value
    return None


def parse_program(text: str) -> Program:
    """Parse program text into an (unchecked) :class:`Program`."""
    if not isinstance(text, str):
        raise ProgramSyntaxError(f"program text must be a str, not {type(text).__name__}")
    if len(text) > MAX_SOURCE:
        raise ProgramSyntaxError(f"program text longer than {MAX_SOURCE} characters")
    try:
        with warnings.catch_warnings():  # e.g. "invalid decimal literal": the text is data
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="exec")
    except SyntaxError as e:
        msg = e.msg if e.msg.startswith("invalid syntax") else f"invalid syntax: {e.msg}"
        raise ProgramSyntaxError(msg, e.lineno or 0, e.offset or 0) from None
    except (RecursionError, MemoryError):  # CPython's parser gives up on deep nesting
        raise ProgramSyntaxError("program text nested too deeply to parse") from None
    except ValueError as e:
        raise ProgramSyntaxError(f"unparsable program text: {e}") from None
    try:
        return _Builder().program(tree)
    except ProgramError:
        raise
    except RecursionError:
        raise ProgramSyntaxError("expression nested too deeply") from None


class _Builder:
    def __init__(self) -> None:
        self.defined: set[str] = set()

    def program(self, tree: ast.Module) -> Program:
        body = list(tree.body)
        if body and _is_docstring(body[0]):
            body = body[1:]
        if len(body) != 1 or not isinstance(body[0], ast.FunctionDef):
            node = body[0] if body else tree
            raise ProgramSyntaxError("a program is exactly one 'def' function", **_where(node))
        fn = body[0]
        if fn.decorator_list or fn.returns or getattr(fn, "type_params", None):
            raise ProgramSyntaxError("decorators, annotations and type parameters are not allowed",
                                     **_where(fn))
        params, hyper = self.signature(fn)
        self.defined = set(params) | {k for k, _ in hyper}
        stmts = list(fn.body)
        doc = None
        if stmts and _is_docstring(stmts[0]):
            doc = stmts.pop(0).value.value
        if not stmts or not isinstance(stmts[-1], ast.Return):
            raise SignatureError("the function must end with 'return update, *slots'",
                                 **_where(stmts[-1] if stmts else fn))
        assigns = tuple(self.statement(s) for s in stmts[:-1])
        returns = self.returns(stmts[-1])
        slots = [p for p in params if p not in INPUTS]
        if len(returns) != 1 + len(slots):
            raise SignatureError(
                f"return gives {len(returns)} values; expected the update and "
                f"{len(slots)} state slot(s) ({', '.join(slots) or 'none'})",
                **_where(stmts[-1]),
            )
        return Program(fn.name, tuple(params), tuple(hyper), assigns, returns, doc)

    def signature(self, fn: ast.FunctionDef) -> tuple[list[str], list[tuple[str, float]]]:
        a = fn.args
        if a.vararg or a.kwarg or a.posonlyargs or a.kw_defaults and any(a.kw_defaults):
            raise SignatureError("only plain positional and keyword parameters are allowed",
                                 **_where(fn))
        if a.kwonlyargs:
            raise SignatureError("keyword-only parameters are not allowed",
                                 **_where(a.kwonlyargs[0]))
        names = [x.arg for x in a.args]
        for x in a.args:
            if x.annotation is not None:
                raise SignatureError("parameter annotations are not allowed", **_where(x))
            if x.arg in ops.REGISTRY:
                raise SignatureError(f"parameter {x.arg!r} shadows an op", name=x.arg, **_where(x))
        seen: set[str] = set()
        for x in a.args:
            if x.arg in seen:
                raise SignatureError(f"duplicate parameter {x.arg!r}", name=x.arg, **_where(x))
            seen.add(x.arg)
        n_pos = len(names) - len(a.defaults)
        params = names[:n_pos]
        hyper = []
        for arg, default in zip(a.args[n_pos:], a.defaults, strict=True):
            value = _number(default)
            if value is None and isinstance(default, ast.UnaryOp) and isinstance(
                default.op, ast.USub | ast.UAdd
            ):
                inner = _number(default.operand)
                if inner is not None:
                    value = -inner if isinstance(default.op, ast.USub) else inner
            if value is None:
                raise SignatureError(
                    f"hyperparameter {arg.arg!r} needs a numeric default", name=arg.arg,
                    **_where(default),
                )
            if arg.arg in INPUTS:
                raise SignatureError(f"reserved input {arg.arg!r} cannot be a hyperparameter",
                                     name=arg.arg, **_where(arg))
            hyper.append((arg.arg, value))
        slots = [x for x in a.args[:n_pos] if x.arg not in INPUTS]
        if len(slots) > MAX_SLOTS:
            raise SignatureError(f"more than {MAX_SLOTS} state slots", name=slots[MAX_SLOTS].arg,
                                 **_where(slots[MAX_SLOTS]))
        for required in ("g",):
            if required not in params:
                raise SignatureError(f"the signature must take the gradient {required!r}",
                                     name=required, **_where(fn))
        return params, hyper

    def statement(self, s: ast.stmt) -> Assign:
        if isinstance(s, ast.Assign):
            if len(s.targets) != 1 or not isinstance(s.targets[0], ast.Name):
                raise ProgramSyntaxError("assign to exactly one plain name", **_where(s))
            target, expr = s.targets[0].id, self.expr(s.value)
        elif isinstance(s, ast.AugAssign):
            if not isinstance(s.target, ast.Name) or type(s.op) not in _AUG_OK:
                raise ProgramSyntaxError("unsupported augmented assignment", **_where(s))
            target = s.target.id
            self.read(target, s.target)
            expr = Call(_BINOPS[type(s.op)], (Var(target, **_where(s.target)), self.expr(s.value)),
                        **_where(s))
        else:
            raise ProgramSyntaxError(
                f"statement {type(s).__name__} is not allowed; only assignments and one return",
                **_where(s),
            )
        if target in ops.REGISTRY:
            raise ProgramSyntaxError(f"assignment to {target!r} shadows an op", name=target,
                                     **_where(s))
        if target in INPUTS:
            raise ProgramSyntaxError(f"reserved input {target!r} cannot be reassigned", name=target,
                                     **_where(s))
        self.defined.add(target)
        return Assign(target, expr, **_where(s))

    def returns(self, s: ast.Return) -> tuple[Expr, ...]:
        if s.value is None:
            raise SignatureError("return needs the update and the new state slots", **_where(s))
        values = s.value.elts if isinstance(s.value, ast.Tuple) else [s.value]
        return tuple(self.expr(v) for v in values)

    def read(self, name: str, node: ast.AST) -> None:
        if name not in self.defined:
            kind = "an op, not a value" if name in ops.REGISTRY else "not defined"
            raise UnknownNameError(f"name {name!r} is {kind}", name=name, **_where(node))

    def expr(self, node: ast.AST, depth: int = 0) -> Expr:
        if depth > MAX_DEPTH:
            raise ProgramSyntaxError("expression nested too deeply", **_where(node))
        d = depth + 1
        where = _where(node)
        if isinstance(node, ast.Name):
            self.read(node.id, node)
            return Var(node.id, **where)
        value = _number(node)
        if value is not None:
            return Const(value, **where)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return Call(_BINOPS[type(node.op)], (self.expr(node.left, d), self.expr(node.right, d)),
                        **where)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            literal = _number(node.operand)
            if literal:  # a negative literal is one constant (-0 stays neg(0): its sign matters)
                return Const(-literal, **where)
            return Call("neg", (self.expr(node.operand, d),), **where)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
            return self.expr(node.operand, d)
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1 or type(node.ops[0]) not in _CMPOPS:
                raise ProgramSyntaxError("only single '>' or '<' comparisons are allowed", **where)
            return Call(_CMPOPS[type(node.ops[0])],
                        (self.expr(node.left, d), self.expr(node.comparators[0], d)), **where)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise ProgramSyntaxError("only calls of registry ops by name are allowed", **where)
            name = node.func.id
            op = ops.get(name)
            if op is None:
                raise UnknownOpError(f"unknown op {name!r}", name=name, **where)
            if node.keywords:
                raise ProgramSyntaxError(f"op {name!r} takes positional arguments only", name=name,
                                         **where)
            if any(isinstance(a, ast.Starred) for a in node.args):
                raise ProgramSyntaxError("starred arguments are not allowed", name=name, **where)
            if len(node.args) != op.arity:
                raise ArityError(
                    f"op {name!r} takes {op.arity} argument(s), got {len(node.args)}", name=name,
                    **where,
                )
            return Call(name, tuple(self.expr(a, d) for a in node.args), **where)
        if isinstance(node, ast.Constant):
            raise ProgramSyntaxError(f"constant {node.value!r} is not a number", **where)
        raise ProgramSyntaxError(f"{type(node).__name__} is not allowed in a program", **where)


def _is_docstring(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


__all__ = ["parse_program", "names_read"]
