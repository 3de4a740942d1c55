"""Printing: a program's kernel plan as the Python source of its update function.

There is one compiler. :func:`kernel_plan` traces the program with
:mod:`optforge.lang.fuse`, exactly as :class:`~optforge.optim.ProgramOptimizer`'s
eager step does (lists for ``w``, ``g``, ``h`` and the slots, Python floats for
``lr``, ``step`` and the hyperparameters, the update applied to ``w`` in place),
and this module prints that list of :class:`~optforge.lang.kernels.Kernel`
records, one line each, with the print forms the op registry gives every op
(``Op.py`` for floats, ``Op.each`` for one tensor). The exported file therefore
runs the kernels the optimizer runs, in the same order, on the same operands:
the same fused ``lerp_`` / ``addcmul_`` / ``addcdiv_`` calls, written in place
into the same buffers.

Two functions come out. ``<name>_update`` computes the step's uniform floats
(the ``scalar`` kernels, inlined into one expression where a float is read
once) and calls ``<name>_kernels``, the tensor work, on the lists and the floats
it reads. Each program statement is written as a comment above its first line.

With matrix ops in the program every tensor is the 2-D view ``R x C`` of its
parameter (reductions keep ``1 x 1``); without, tensors keep their own shapes
(reductions give 0-d tensors): the runtime's ``(K, R, C)`` views without the
replica axis.
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass

from ..lang import helpers, ops
from ..lang.canon import eliminate_dead_code
from ..lang.fuse import Trace
from ..lang.ir import Call, Program, expr_source, walk
from ..lang.kernels import OWN_CALLS, SCALAR_ARGS_OK, W_REG, Kernel, Scalar, Tensors
from ..lang.pyform import Py, atom, negate, number
from ..lang.runtime import Plan
from ..lang.shapes import Shape
from .layout import INDENT, LINE, Emitter, Namer, docstring, wrap_line

__all__ = ["LINE", "ExportError", "Lowered", "kernel_plan", "live_program", "lower",
           "wrap_line"]

HELPERS: dict[str, str] = {
    name: inspect.getsource(fn) for name, fn in vars(helpers).items()
    if name.startswith("_") and inspect.isfunction(fn) and fn.__module__ == helpers.__name__}
"""Source of each helper an exported file may call (copied in when called)."""


class ExportError(ValueError):
    """A program or an option that cannot be exported as asked."""


def helpers_used(code: str) -> list[str]:
    """Names of the helpers that ``code`` calls, sorted."""
    return sorted(name for name in HELPERS if re.search(rf"(?<![\w.]){name}\(", code))


def dims(matrix: bool) -> dict[str, str]:
    """Placeholders of the reduction forms: reduce every axis to a 0-d tensor, or
    (programs with matrix ops) the 2-D view's two axes to a 1 x 1 tensor."""
    if matrix:
        kw = "dim=(-2, -1), keepdim=True"
        return {"dims": kw, "dims_": kw + ", ", "dims_k": ", " + kw, "scalar_shape": "(1, 1)"}
    return {"dims": "", "dims_": "", "dims_k": "", "scalar_shape": "()"}


def live_program(program: Program) -> Program:
    """``program`` without dead code and dead slots, keeping every hyperparameter (the
    optimizer's arguments)."""
    live = eliminate_dead_code(program)
    return Program(live.name, live.params, program.hyper, live.body, live.returns, program.doc)


def kernel_plan(program: Program) -> tuple[Plan, Trace]:
    """The plan and the kernel trace that both ProgramOptimizer's eager step (float
    hyperparameters, no replicas) and the exported file run for ``program``."""
    plan = Plan(program)
    kinds = {r: "f" if n in ("lr", "step") else "L" for n, r in plan.input_regs.items()}
    kinds.update({r: "L" for r in plan.slot_regs})
    kinds.update({r: "f" for r in plan.hyper_regs.values()})
    return plan, plan.trace(kinds, apply=True)


@dataclass
class Lowered:
    """The update function and what the optimizer class needs to call it."""

    source: str  # the source text of the two functions
    function: str  # the update function: Python floats, then the kernel function
    kernels: str  # the kernel function (tensor code only), floats as Python floats
    inputs: list[str]  # reserved inputs in argument order (w, g, h, lr, step that it reads)
    slots: list[str]  # state slots (their lists follow the inputs w, g, h)
    hyper: list[str]  # hyperparameters, after lr and step
    replaced: list[str]  # slots returned as new lists, in return order
    slot_shapes: dict[str, Shape]
    matrix: bool  # tensors are 2-D views (the program has matrix ops)
    reads_hessian: bool
    program: Program  # the live program that was lowered
    trace: Trace | None = None  # the kernel plan printed


def lower(program: Program, function: str | None = None) -> Lowered:
    """Print ``program``'s kernel plan (dead code removed first) as its update function."""
    return _Printer(live_program(program), function).run()


class _Printer:
    def __init__(self, program: Program, function: str | None):
        p = self.program = program
        self.plan, self.trace = kernel_plan(p)
        self.matrix = any(
            isinstance(n, Call) and ops.REGISTRY[n.op].family == "matrix"
            for e in [s.expr for s in p.body] + list(p.returns) for n in walk(e))
        self.dims = dims(self.matrix)
        self.names = Namer(set(p.params) | {k for k, _ in p.hyper} | {s.target for s in p.body})
        plan = self.plan
        self.name: dict[int, str] = {}  # register -> Python name
        self.kind: dict[int, str] = {}  # register -> "L" list, "f" float, "t" uniform tensor
        self.floats: list[str] = []  # float names in order of definition
        regs = {**plan.input_regs, **dict(zip(plan.slots, plan.slot_regs, strict=True)),
                **plan.hyper_regs}
        for n in [*p.params, *(k for k, _ in p.hyper)]:
            r = regs[n]
            self.name[r] = self.names.claim(n)
            self.kind[r] = "f" if n in ("lr", "step") or n in plan.hyper_regs else "L"
            if self.kind[r] == "f":
                self.floats.append(self.name[r])
        if "w" not in plan.input_regs:  # w is always an argument: the update is applied to it
            self.name[plan.n_regs + W_REG] = self.names.claim("w")
        self.w = self.name[plan.input_regs.get("w", plan.n_regs + W_REG)]
        self.loop = [self.names.fresh(x) for x in ("x", "y", "z")]
        self.function = self.names.fresh(function or f"{p.name}_update")
        self.kernels = self.names.fresh(f"{p.name}_kernels")
        self.expr: dict[int, Py] = {}  # float register -> its Python expression
        self.hoisted: dict[tuple[str, bool], str] = {}
        self.out = Emitter()
        # a float read once, by another float op, is inlined into that op's expression
        self.readers: dict[int, list[str]] = {}
        for k in self.trace.kernels:
            for a in k.args:
                if isinstance(a, Scalar) and a.reg is not None:
                    self.readers.setdefault(a.reg, []).append(k.call)
        for r in self.trace.slots:
            if r is not None:
                self.readers.setdefault(r, []).append("slot")

    # ------------------------------------------------------------ operands
    def float_py(self, a: Scalar) -> Py:
        if a.reg is not None:
            return self.expr[a.reg] if a.reg in self.expr else Py(self.name[a.reg])
        c = a.const
        if math.isnan(c):
            return Py("math.nan")
        if math.isinf(c):
            return Py("math.inf") if c > 0 else negate(Py("math.inf"))
        return number(c)

    def operand(self, a, expand: bool = True) -> str:
        """A kernel operand: a list, a float, or a uniform tensor (as a list if ``expand``)."""
        if isinstance(a, Tensors):
            return self.name[a.reg]
        if a.tensor:
            return f"[{self.name[a.reg]}] * len({self.w})" if expand else self.name[a.reg]
        return self.float_py(a).text

    def tensor(self, a: Scalar, shaped: bool) -> str:
        """A uniform value as a tensor of the parameters' dtype and device (0-d, or 1 x 1
        when ``shaped``), made once per step."""
        if a.tensor:
            return self.name[a.reg]
        py = self.float_py(a).text
        key = (py, shaped)
        if key not in self.hoisted:
            name = self.names.fresh("k")
            like = f"{self.w}[0]"
            code = f"{like}.new_full((1, 1), {py})" if shaped else f"{like}.new_tensor({py})"
            self.out.line(f"{name} = {code}")
            self.hoisted[key] = name
        return self.hoisted[key]

    # ------------------------------------------------------------ kernels
    def hint(self, k: Kernel, other: str = "tmp") -> str:
        """A name for ``k``'s result: the slot it becomes, the program variable it holds,
        else (a list) the statement's variable or ``other``."""
        body = self.program.body
        for s, r in zip(self.program.slots, self.trace.slots, strict=True):
            if r is not None and r == k.dest:
                return s
        if k.dest in self.trace.named:
            return body[self.trace.named[k.dest]].target
        return body[k.stmt].target if k.stmt < len(body) and other == "tmp" else other

    def bind(self, k: Kernel, kind: str) -> str:
        self.kind[k.dest] = kind
        self.name[k.dest] = self.names.claim(self.hint(k))
        return self.name[k.dest]

    def print(self, k: Kernel) -> None:
        if k.call in ("scalar", "const"):
            return self.scalar(k)
        if k.call not in OWN_CALLS:
            code = self.foreach(k)
            if k.dest is None:
                return self.out.line(code)
            return self.out.line(f"{self.bind(k, 'L')} = {code}")
        if k.call == "expand":
            (a,) = k.args
            code = f"[{self.tensor(a, False)}] * len({self.w})"
        elif k.call == "clone":
            x = self.loop[0]
            code = (f"[{x}.clone(memory_format=torch.contiguous_format) for {x} in "
                    f"{self.operand(k.args[0])}]")
        elif k.call == "transpose":
            code = f"[{self.loop[0]}.mT for {self.loop[0]} in {self.operand(k.args[0])}]"
        elif k.call == "global":
            code = ops.REGISTRY[k.op].each.format(a=self.operand(k.args[0]), x=self.loop[0],
                                                  **self.dims)
            return self.out.line(f"{self.bind(k, 't')} = {code}")
        elif k.call == "uniform":
            return self.out.line(f"{self.bind(k, 't')} = {self.uniform(k)}")
        else:
            code = self.each(k)
        self.out.line(f"{self.bind(k, 'L')} = {code}")

    def foreach(self, k: Kernel) -> str:
        """A multi-tensor kernel call, floats as Python floats (the kernels' scalar overloads)."""
        name = {"add_alpha": "add", "add_alpha_": "add_"}.get(k.call, k.call)
        args = [self.operand(a) for a in k.args]
        if name != k.call:
            args[-1] = f"alpha={args[-1]}"
        return f"torch._foreach_{name}({', '.join(args)})"

    def scalar(self, k: Kernel) -> None:
        """A float: inlined where it is read once by another float op, else a name."""
        args = [Scalar(None, k.args[0])] if k.call == "const" else k.args
        ones = [a for a in args if a.const == -1.0]
        if k.op == "mul" and ones:  # x * -1 is -x exactly
            py = negate(self.float_py(args[1] if args[0] is ones[0] else args[0]))
        elif k.call == "const":
            py = self.float_py(args[0])
        else:
            py = ops.REGISTRY[k.op].py(*(self.float_py(a) for a in args))
        self.kind[k.dest] = "f"
        readers = self.readers.get(k.dest, [])
        if not readers:  # dead: a coefficient of terms that were never written out
            return
        if readers == ["scalar"] and len(py.text) <= 60:
            self.expr[k.dest] = py
            return
        name = self.names.claim(self.hint(k, "c"))
        self.out.scalar_line(f"{name} = {py.text}")
        self.name[k.dest] = name
        self.floats.append(name)

    def uniform(self, k: Kernel) -> str:
        """``op`` on uniform values, one of them a tensor (see :func:`lang.kernels.bind`)."""
        op = ops.REGISTRY[k.op]
        if op.family == "global":
            a = f"[{self.tensor(k.args[0], self.matrix)}] * len({self.w})"
            return op.each.format(a=a, x=self.loop[0], **self.dims)
        fmt = dict(self.dims)
        for key, a in zip("abc", k.args, strict=False):
            if a.tensor or op.name not in SCALAR_ARGS_OK:
                fmt[key] = self.tensor(a, self.matrix and op.family != "elementwise")
            else:
                fmt[key] = atom(self.float_py(a))
        return op.each.format(**fmt)

    def each(self, k: Kernel) -> str:
        """``op`` tensor by tensor: a list comprehension over the lists among its operands."""
        op = ops.REGISTRY[k.op]
        fmt, loops = dict(self.dims), []
        matrix_op = op.family != "elementwise"  # sees floats as 1 x 1
        for i, (key, a) in enumerate(zip("abc", k.args, strict=False)):
            if isinstance(a, Tensors):
                fmt[key] = self.loop[len(loops)]
                loops.append((fmt[key], self.name[a.reg]))
            elif a.tensor or i in op.tensor_args or matrix_op:
                fmt[key] = self.tensor(a, self.matrix and matrix_op)
            else:
                fmt[key] = atom(self.float_py(a))
        expr = op.each.format(**fmt)
        if len(loops) == 1:
            return f"[{expr} for {loops[0][0]} in {loops[0][1]}]"
        names, lists = (", ".join(x) for x in zip(*loops, strict=True))
        return f"[{expr} for {names} in zip({lists}, strict=True)]"

    def slot(self, s: str, r: int) -> str:
        """The list a slot's new value is returned in (a float or tensor is spread)."""
        if self.kind[r] == "L":
            return self.name[r]
        x, w = self.loop[0], self.w
        name = self.names.claim(s)
        if self.kind[r] == "t":
            self.out.line(f"{name} = [{self.name[r]}.clone() for _ in {w}]")
            return name
        shape, c = ("(1, 1)" if self.matrix else "()"), self.operand(Scalar(r))
        self.out.line(f"{name} = [{x}.new_full({shape}, {c}) for {x} in {w}]")
        return name

    # ------------------------------------------------------------ the function
    def run(self) -> Lowered:
        p = self.program
        stmt = -1
        for k in [*self.trace.kernels, None]:
            at = len(p.body) if k is None else k.stmt
            while stmt < at:
                self.out.end()
                stmt += 1
                self.out.begin(f"{p.body[stmt].target} = {expr_source(p.body[stmt].expr)}"
                               if stmt < len(p.body) else "the new state, then w <- w - update")
            if k is not None:
                self.print(k)
        replaced = [(s, self.slot(s, r)) for s, r in zip(p.slots, self.trace.slots,
                                                          strict=True) if r is not None]
        self.out.end()
        return self.result(replaced)

    def result(self, replaced: list[tuple[str, str]]) -> Lowered:
        p = self.program
        inputs = ["w", "g"] + [n for n in ("h", "lr", "step") if n in p.params]
        names = {**{n: self.name[r] for n, r in self.plan.input_regs.items()},
                 **dict(zip(p.slots, (self.name[r] for r in self.plan.slot_regs),
                            strict=True)),
                 **{k: self.name[r] for k, r in self.plan.hyper_regs.items()}, "w": self.w}
        lists = [names[n] for n in inputs if n in ("w", "g", "h")] + [names[s] for s in p.slots]
        floats = [names[n] for n in inputs if n in ("lr", "step")]
        floats += [names[k] for k, _ in p.hyper]
        code = "\n".join(line for line in self.out.kernel
                         if not line.lstrip().startswith("#"))
        used = [n for n in dict.fromkeys(self.floats)
                if re.search(rf"(?<![\w.]){n}(?!\w)", code)]
        what = "w and the state lists" if p.slots else "w"
        ret = (f"; returns the new lists of {', '.join(s for s, _ in replaced)}" if replaced
               else "")
        back = []
        if replaced:
            back.append(f"{INDENT}return {', '.join(n for _, n in replaced)}"
                        + ("," if len(replaced) == 1 else ""))
        kernels = wrap_line(f"def {self.kernels}({', '.join(lists + used)}):")
        kernels += docstring(f"The tensor work of one {p.name} step, on lists of tensors (one "
                             f"per parameter) and Python floats: updates {what} in place{ret}.")
        kernels += self.out.kernel + back
        update = wrap_line(f"def {self.function}({', '.join(lists + floats)}):")
        update += docstring(f"One {p.name} step: the uniform scalars as Python floats, then "
                            f"{self.kernels} on the tensors.")
        update += self.out.scalar
        update += wrap_line(f"{INDENT}return {self.kernels}({', '.join(lists + used)})")
        source = "\n\n\n".join("\n".join(f) for f in (kernels, update)) + "\n"
        return Lowered(source, self.function, self.kernels, inputs,
                       list(p.slots), [k for k, _ in p.hyper], [s for s, _ in replaced],
                       dict(self.plan.typing.slot_shapes), self.matrix, "h" in p.params, p,
                       self.trace)
