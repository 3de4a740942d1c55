r"""A plan as one C function: the compiled step (``compile=True``).

:class:`CCode` classifies every register of a :class:`~optforge.lang.runtime.Plan`

* ``H`` (host): uniform (constants, ``lr``, ``step``, hyperparameters and ops on
  them), computed once per step and replica at the start of the C function, in
  ``double`` (the IEEE arithmetic and libm of each op's ``scalar`` function, so the
  runtime's Python floats up to the rounding of ``sigmoid``); the caller passes only
  the inputs (:attr:`CCode.inputs`);
* ``S`` (segment scalar): one value per tensor and replica: per-tensor
  reductions, global reductions (the same value for every tensor) and
  element-wise ops on them, and ``1 x 1`` state slots;
* ``F`` (field): one value per entry: the parameter, gradient, Hessian
  estimate, full-size slots and element-wise ops on them,

and writes C for a bucket of ``n`` tensors (``K`` replicas each; a *segment*
is one replica of one tensor, ``numel / K`` contiguous entries):

1. stage 0: ``S`` values that need no reduction, segment by segment;
2. for each reduction level ``l = 1, 2, ...``: one pass over the entries
   (chunks of :data:`CHUNK` entries, OpenMP-parallel) recomputes the ``F``
   chain each reduction of level ``l`` reads and sums it (a vectorised
   ``omp simd`` reduction in double); the chunks' partial sums are then added
   in order per segment (or over all tensors, for a global reduction) and the
   ``S`` values of level ``l`` computed;
3. the final pass: every entry's ``F`` chain once, ``w <- w - update`` and the
   full-size slots stored in place (all loads of an entry before its stores);
4. ``1 x 1`` slots stored last.

Reductions are rewritten into three primitives (sum, mean and the NaN-propagating
max over a segment or over all segments): ``norm(x) = sqrt(sum(x^2))``, ``rms(x) =
sqrt(mean(x^2))``, ``std(x) = sqrt(mean((x - mean(x))^2))`` (two levels),
``max_abs(x) = max(|x|)``, ``global_norm(x) = sqrt(gsum(x^2))``, ...

Float semantics follow :mod:`optforge.lang.ops`: entries are computed in the
parameters' dtype (``float`` or ``double``; host values rounded to it once, as
torch rounds a Python scalar), IEEE division and ``sqrt``, libm for
transcendental functions, NaN-propagating ``maximum``/``minimum``/``clip``/
``relu``, ``sign(NaN) = 0``, ``where(c, a, b) = a if c > 0``, Python's ``%``
for ``mod``. Compiled without ``-ffast-math`` and with ``-ffp-contract=off``,
so every operation rounds as written; reductions accumulate in double.

Not compiled (:class:`Unsupported`; the optimizer then runs the eager plan):
matrix ops (row/column statistics, ``transpose``, ``matmul``,
``orthogonalize``), reduced ``R x 1`` / ``1 x C`` values, reductions of
uniform or per-tensor scalars.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from .shapes import FULL, SCALAR

CHUNK = 1 << 15
"""Entries per work item of a pass (the unit of OpenMP parallelism and of the
ordered partial sums)."""


class Unsupported(Exception):
    """The program has something the C code does not express (the reason)."""


@dataclass(frozen=True)
class _Ins:
    dest: int
    op: str  # an op name, or a primitive reduction: psum pmean pmax gsum gmean gmax pnumel
    args: tuple[int, ...]


_PRIMITIVE = {"psum", "pmean", "pmax", "gsum", "gmean", "gmax"}
"""Reductions over a segment's entries (p) or all tensors' entries (g); of a uniform
or per-tensor scalar, a global one takes each tensor's value once (its 1 x 1 view)."""


class CCode:
    """The C source of a plan's step, and what the caller passes to it.

    ``arrays``: the pointer arrays of the call, in order (``"w"``, ``"g"``,
    ``"h"``, or a slot name); ``inputs``: the names of the values passed per
    replica, in order (``"lr"``, ``"step"``, hyperparameters); ``source(dtype)``:
    the C text.
    """

    def __init__(self, plan):
        self.plan = plan
        self.n_regs = plan.n_regs
        self.kind: dict[int, str] = {}
        self.level: dict[int, int] = {}
        self.host_ins: list[tuple[int, str, tuple[int, ...]]] = []
        self.ins: list[_Ins] = []
        self._classify()

    # ------------------------------------------------------------ analysis
    def _new(self, kind: str, level: int) -> int:
        r = self.n_regs
        self.n_regs += 1
        self.kind[r], self.level[r] = kind, level
        return r

    def _emit(self, op: str, args: tuple[int, ...]) -> int:
        kinds = [self.kind[a] for a in args]
        if op in _PRIMITIVE:
            kind, level = "S", self.level.get(args[0], 0) + 1
        else:
            kind = "F" if "F" in kinds else "S"
            level = max((self.level[a] for a in args), default=0)
        r = self._new(kind, level)
        self.ins.append(_Ins(r, op, args))
        return r

    def _classify(self) -> None:
        plan = self.plan
        for name, r in plan.input_regs.items():
            self.kind[r] = "H" if name in ("lr", "step") else "F"
            self.level[r] = 0
        self.input_regs = [(n, r) for n, r in plan.input_regs.items() if n in ("lr", "step")]
        self.input_regs += list(plan.hyper_regs.items())
        self.inputs = [n for n, _ in self.input_regs]
        for name, r in zip(plan.slots, plan.slot_regs, strict=True):
            shape = plan.slot_shapes[name]
            if shape not in (FULL, SCALAR):
                raise Unsupported(f"state slot {name!r} has reduced shape {shape}")
            self.kind[r], self.level[r] = ("F" if shape == FULL else "S"), 0
        for r in (*plan.hyper_regs.values(), *plan.consts):
            self.kind[r], self.level[r] = "H", 0
        alias: dict[int, int] = {}  # plan register -> the register holding its value
        for ins in plan.instrs:
            args = tuple(alias.get(a, a) for a in ins.args)
            op = ins.op
            kinds = [self.kind[a] for a in args]
            if op.family == "matrix":
                raise Unsupported(f"matrix op {op.name!r} (left to torch)")
            if op.family == "elementwise":
                if all(k == "H" for k in kinds):
                    if op.scalar is None:
                        raise Unsupported(f"op {op.name!r} has no float form")
                    self.kind[ins.dest], self.level[ins.dest] = "H", 0
                    self.host_ins.append((ins.dest, op.name, args))
                    continue
                if plan.shape[ins.dest] not in (FULL, SCALAR):
                    raise Unsupported(f"reduced shape {plan.shape[ins.dest]}")
                alias[ins.dest] = self._emit(op.name, args)
                continue
            if kinds[0] != "F" and op.family != "global":
                raise Unsupported(f"{op.name!r} of a uniform or per-tensor scalar")
            alias[ins.dest] = self._reduction(op.name, args[0])
        self.alias = alias
        self.outputs = [alias.get(r, r) for r in plan.outputs]
        self.arrays = ["w", *(n for n in ("g", "h") if n in plan.input_regs), *plan.slots]
        used = {a for i in self.ins for a in i.args} | set(self.outputs)
        self.host = sorted(r for r in used if self.kind[r] == "H")
        self.levels = max((self.level[i.dest] for i in self.ins), default=0)

    def _reduction(self, name: str, x: int) -> int:
        e = self._emit
        if name == "numel":
            r = self._new("S", 0)
            self.ins.append(_Ins(r, "pnumel", ()))
            return r
        table = {
            "sum": lambda: e("psum", (x,)),
            "mean": lambda: e("pmean", (x,)),
            "norm": lambda: e("sqrt", (e("psum", (e("square", (x,)),)),)),
            "rms": lambda: e("sqrt", (e("pmean", (e("square", (x,)),)),)),
            "max_abs": lambda: e("pmax", (e("abs", (x,)),)),
            "std": lambda: e("sqrt", (e("pmean", (e("square", (e("sub", (x, e(
                "pmean", (x,)))),)),)),)),
            "global_norm": lambda: e("sqrt", (e("gsum", (e("square", (x,)),)),)),
            "global_rms": lambda: e("sqrt", (e("gmean", (e("square", (x,)),)),)),
            "global_mean": lambda: e("gmean", (x,)),
            "global_max_abs": lambda: e("gmax", (e("abs", (x,)),)),
        }
        if name not in table:
            raise Unsupported(f"reduction {name!r}")
        return table[name]()

    # ------------------------------------------------------------ code
    def source(self, dtype: str) -> str:
        """The C translation unit for entries of ``dtype`` (``"float"`` or ``"double"``)."""
        if dtype not in ("float", "double"):
            raise Unsupported(f"dtype {dtype}")
        return _Writer(self, dtype).text()


# C expression of each element-wise op on operands of type T
_C: dict[str, Callable[..., str]] = {
    "add": lambda a, b: f"({a} + {b})",
    "sub": lambda a, b: f"({a} - {b})",
    "mul": lambda a, b: f"({a} * {b})",
    "div": lambda a, b: f"({a} / {b})",
    "pow": lambda a, b: f"POW({a}, {b})",
    "neg": lambda a: f"(-{a})",
    "sign": lambda a: f"((T)(({a} > 0) - ({a} < 0)))",
    "abs": lambda a: f"FABS({a})",
    "sqrt": lambda a: f"SQRT({a})",
    "rsqrt": lambda a: f"((T)1 / SQRT({a}))",
    "square": lambda a: f"({a} * {a})",
    "reciprocal": lambda a: f"((T)1 / {a})",
    "exp": lambda a: f"EXP({a})",
    "log": lambda a: f"LOG({a})",
    "log1p": lambda a: f"LOG1P({a})",
    "expm1": lambda a: f"EXPM1({a})",
    "tanh": lambda a: f"TANH({a})",
    "sigmoid": lambda a: f"((T)1 / ((T)1 + EXP(-{a})))",
    "softsign": lambda a: f"({a} / ((T)1 + FABS({a})))",
    "relu": lambda a: f"({a} != {a} ? {a} : ({a} > 0 ? {a} : (T)0))",
    "sin": lambda a: f"SIN({a})",
    "cos": lambda a: f"COS({a})",
    "atan": lambda a: f"ATAN({a})",
    "erf": lambda a: f"ERF({a})",
    "maximum": lambda a, b: f"max_({a}, {b})",
    "minimum": lambda a, b: f"min_({a}, {b})",
    "clip": lambda x, c: f"min_(max_({x}, -{c}), {c})",
    "interp": lambda a, b, t: f"({a} + {t} * ({b} - {a}))",
    "where": lambda c, a, b: f"({c} > 0 ? {a} : {b})",
    "gt": lambda a, b: f"((T)({a} > {b}))",
    "lt": lambda a, b: f"((T)({a} < {b}))",
    "mod": lambda a, b: f"mod_({a}, {b})",
}

_PRELUDE = """\
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
typedef {T} T;
{macros}
static inline T max_(T a, T b) {{ return (a != a || b != b) ? a + b : (a > b ? a : b); }}
static inline T min_(T a, T b) {{ return (a != a || b != b) ? a + b : (a < b ? a : b); }}
static inline T mod_(T a, T b) {{
    T r = FMOD(a, b);
    if (r != 0 && ((b < 0) != (r < 0))) r += b;
    return r;
}}
static inline double dmax_(double a, double b) {{
    return (a != a || b != b) ? a + b : (a > b ? a : b);
}}
static inline double dmin_(double a, double b) {{
    return (a != a || b != b) ? a + b : (a < b ? a : b);
}}
static inline double dmod_(double a, double b) {{
    double r = fmod(a, b);
    if (r != 0 && ((b < 0) != (r < 0))) r += b;
    return r;
}}
"""

_FUNCS = ("pow", "fabs", "sqrt", "exp", "log", "log1p", "expm1", "tanh", "sin", "cos",
          "atan", "erf", "fmod")
_DOUBLE = [(re.compile(rf"\b{f.upper()}\("), f"{f}(") for f in _FUNCS] + [
    (re.compile(r"\(T\)"), "(double)"), (re.compile(r"\b(max_|min_|mod_)\("), r"d\1(")]


def _in_double(expr: str) -> str:
    """An op's C expression (written for entries of type T) on doubles."""
    for pattern, repl in _DOUBLE:
        expr = pattern.sub(repl, expr)
    return expr


def _literal(value: float) -> str:
    """A double exactly as a C literal."""
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INFINITY" if value > 0 else "(-INFINITY)"
    return f"({float(value).hex()})"


class _Writer:
    """Writes the translation unit (see the module docstring for its structure)."""

    def __init__(self, code: CCode, dtype: str):
        self.c = code
        self.T = dtype
        self.lines: list[str] = []
        self.deps = {i.dest: i for i in code.ins}
        self.arr = {name: j for j, name in enumerate(code.arrays)}
        plan = code.plan
        self.array_of: dict[int, str] = {plan.input_regs[n]: n for n in ("w", "g", "h")
                                         if n in plan.input_regs}
        self.array_of.update(zip(plan.slot_regs, plan.slots, strict=True))

    def w(self, line: str, depth: int = 1) -> None:
        self.lines.append("    " * depth + line)

    def name(self, r: int) -> str:
        kind = self.c.kind[r]
        return {"H": "h", "S": "s", "F": "f"}[kind] + str(r)

    def closure(self, roots) -> list[_Ins]:
        """The ``F`` instructions ``roots`` depend on, in program order."""
        seen: set[int] = set()
        stack = [r for r in roots if self.c.kind[r] == "F"]
        while stack:
            r = stack.pop()
            if r in seen or r not in self.deps:
                continue
            seen.add(r)
            stack.extend(a for a in self.deps[r].args if self.c.kind[a] == "F")
        return [i for i in self.c.ins if i.dest in seen]

    def scalars_of(self, ins: list[_Ins], roots) -> tuple[set[int], set[int], set[int]]:
        """Host, segment and array-backed registers read by ``ins`` and ``roots``."""
        regs = {a for i in ins for a in i.args} | set(roots)
        h = {r for r in regs if self.c.kind[r] == "H"}
        s = {r for r in regs if self.c.kind[r] == "S"}
        f = {r for r in regs if self.c.kind[r] == "F" and r in self.array_of}
        return h, s, f

    def chunk_loop(self, hs, ss, fs) -> None:
        """Open the parallel loop over chunks of at most CHUNK entries of one segment
        (tensor i, replica k; entries [lo, hi)), with the segment's locals."""
        w = self.w
        w("#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)")
        w("for (int64_t ch = 0; ch < nch; ch++) {")
        w("const int seg = cseg[ch], i = seg / K, k = seg % K;", 2)
        w("const int64_t len = numel[i] / K, lo = clo[ch];", 2)
        w(f"const int64_t hi = lo + {CHUNK} < len ? lo + {CHUNK} : len;", 2)
        self.seg_header(hs, ss, fs, 2)

    def seg_header(self, hs, ss, fs, depth) -> None:
        """Locals of one segment: its host and segment values, entry pointers."""
        for r in sorted(hs):
            self.w(f"const T {self.name(r)} = (T)host[k * NH + {self.c.host.index(r)}];", depth)
        for r in sorted(ss):
            self.w(f"const T {self.name(r)} = {self.sval(r)};", depth)
        for r in sorted(fs):
            a = self.arr[self.array_of[r]]
            self.w(f"T *restrict p{r} = (T *)ptrs[{a} * n + i] + (int64_t)k * len;", depth)

    def sval(self, r: int) -> str:
        """A segment value in the stage arrays or, for a ``1 x 1`` slot, its tensor."""
        if r in self.array_of:
            return f"((T *)ptrs[{self.arr[self.array_of[r]]} * n + i])[k]"
        return f"S[{self.sregs.index(r)} * nseg + seg]"

    def body(self, ins: list[_Ins], depth: int) -> None:
        for i in ins:
            self.w(f"const T {self.name(i.dest)} = "
                   f"{_C[i.op](*(self.name(a) for a in i.args))};", depth)

    def loads(self, fs, depth) -> None:
        for r in sorted(fs):
            self.w(f"const T {self.name(r)} = p{r}[e];", depth)

    def text(self) -> str:
        c = self.c
        macros = "\n".join(f"#define {f.upper()} {f}{'f' if self.T == 'float' else ''}"
                           for f in _FUNCS)
        out = [_PRELUDE.format(T=self.T, macros=macros)]
        self.sregs = [i.dest for i in c.ins if c.kind[i.dest] == "S"]
        w = self.w
        self.lines = []
        out.append(
            f"#define NH {max(len(c.host), 1)}\n"
            f"#define NI {max(len(c.inputs), 1)}\n"
            "int optforge_step(int n, int K, const int64_t *numel, void *const *ptrs,\n"
            "                  const double *inputs, int nt) {\n"
            "    const int nseg = n * K;\n"
            "    int64_t nch = 0;\n"
            "    for (int i = 0; i < n; i++)\n"
            f"        nch += K * ((numel[i] / K + {CHUNK - 1}) / {CHUNK});\n"
            "    int *cseg = malloc(sizeof(int) * (nch + 1));\n"
            "    int64_t *clo = malloc(sizeof(int64_t) * (nch + 1));\n"
            f"    T *S = malloc(sizeof(T) * ({max(len(self.sregs), 1)} * (size_t)nseg + 1));\n"
            "    int *first = malloc(sizeof(int) * (nseg + 1));\n"
            "    double *host = malloc(sizeof(double) * ((size_t)K * NH + 1));\n"
            "    if (!cseg || !clo || !S || !first || !host) {\n"
            "        free(cseg); free(clo); free(S); free(first); free(host); return -1;\n"
            "    }\n"
            "    {\n"
            "        int64_t c = 0;\n"
            "        for (int seg = 0; seg < nseg; seg++) {\n"
            "            const int64_t len = numel[seg / K] / K;\n"
            "            first[seg] = (int)c;\n"
            f"            for (int64_t lo = 0; lo < len; lo += {CHUNK}) {{\n"
            "                cseg[c] = seg; clo[c] = lo; c++;\n"
            "            }\n"
            "        }\n"
            "        first[nseg] = (int)c;\n"
            "    }\n")
        self.host_stage()
        self.stage(0)
        for level in range(1, c.levels + 1):
            self.reduce_pass(level)
            self.stage(level)
        self.final_pass()
        w("free(cseg); free(clo); free(S); free(first); free(host);")
        w("return 0;")
        out.append("\n".join(self.lines))
        out.append("}\n")
        return "\n".join(out)

    def host_stage(self) -> None:
        """The host values of every replica, in double, from its inputs."""
        c = self.c
        w = self.w
        w("/* host values, per replica */")
        w("for (int k = 0; k < K; k++) {")
        w("const double *x = inputs + (size_t)k * NI;", 2)
        w("(void)x;", 2)
        for j, (_, r) in enumerate(c.input_regs):
            w(f"const double d{r} = x[{j}];", 2)
        for r, value in c.plan.consts.items():
            w(f"const double d{r} = {_literal(value)};", 2)
        for dest, op, args in c.host_ins:
            w(f"const double d{dest} = {_in_double(_C[op](*(f'd{a}' for a in args)))};", 2)
        for j, r in enumerate(c.host):
            w(f"host[k * NH + {j}] = d{r};", 2)
        w("}")

    def seg_loop_open(self) -> None:
        self.w("for (int seg = 0; seg < nseg; seg++) {")
        self.w("const int i = seg / K, k = seg % K;", 2)
        self.w("const int64_t len = numel[i] / K;", 2)
        self.w("(void)len;", 2)

    def stage(self, level: int) -> None:
        """Segment values of ``level`` that are not reductions, segment by segment."""
        c = self.c
        todo = [i for i in c.ins if c.kind[i.dest] == "S" and c.level[i.dest] == level
                and i.op not in _PRIMITIVE]
        if not todo:
            return
        self.w(f"/* stage {level}: per-segment values */")
        self.seg_loop_open()
        args = {a for i in todo for a in i.args} - {i.dest for i in todo}
        hs = {a for a in args if c.kind[a] == "H"}
        ss = {a for a in args if c.kind[a] == "S"}
        self.seg_header(hs, ss, set(), 2)
        for i in todo:
            value = ("(T)len" if i.op == "pnumel"
                     else _C[i.op](*(self.name(a) for a in i.args)))
            self.w(f"const T {self.name(i.dest)} = {value};", 2)
            self.w(f"S[{self.sregs.index(i.dest)} * nseg + seg] = {self.name(i.dest)};", 2)
        self.w("}")

    def reduce_pass(self, level: int) -> None:
        c = self.c
        reds = [i for i in c.ins if i.op in _PRIMITIVE and c.level[i.dest] == level]
        if not reds:
            return
        reds = [i for i in reds if c.kind[i.args[0]] == "F"]
        scal = [i for i in c.ins if i.op in _PRIMITIVE and c.level[i.dest] == level
                and c.kind[i.args[0]] != "F"]
        if scal:
            self.scalar_reductions(scal)
        if not reds:
            return
        roots = [i.args[0] for i in reds]
        ins = self.closure(roots)
        hs, ss, fs = self.scalars_of(ins, roots)
        w = self.w
        w(f"/* pass {level}: reductions */")
        w("{")
        for j in range(len(reds)):
            w(f"double *P{j} = malloc(sizeof(double) * (nch + 1));")
            w(f"if (!P{j}) {{ free(cseg); free(clo); free(S); free(first); free(host); "
              "return -1; }")
        self.chunk_loop(hs, ss, fs)
        clauses = []
        for j, r in enumerate(reds):
            if r.op.endswith("max"):
                w(f"double a{j} = -INFINITY; int nan{j} = 0;", 2)
                clauses += [f"reduction(max : a{j})", f"reduction(| : nan{j})"]
            else:
                w(f"double a{j} = 0;", 2)
                clauses.append(f"reduction(+ : a{j})")
        w(f"#pragma omp simd {' '.join(clauses)}", 2)
        w("for (int64_t e = lo; e < hi; e++) {", 2)
        self.loads(fs, 3)
        self.body(ins, 3)
        for j, r in enumerate(reds):
            x = f"(double){self.name(r.args[0])}"
            if r.op.endswith("max"):
                w(f"a{j} = {x} > a{j} ? {x} : a{j}; nan{j} |= {x} != {x};", 3)
            else:
                w(f"a{j} += {x};", 3)
        w("}", 2)
        for j, r in enumerate(reds):
            w(f"P{j}[ch] = " + (f"nan{j} ? NAN : a{j};" if r.op.endswith("max") else f"a{j};"),
              2)
        w("}")
        # combine: chunks of a segment in order; global ones over the tensors of a replica
        for j, r in enumerate(reds):
            dst = f"S[{self.sregs.index(r.dest)} * nseg + seg]"
            mx = r.op.endswith("max")
            comb = ("t = (t != t || P{j}[c] != P{j}[c]) ? NAN : (P{j}[c] > t ? P{j}[c] : t);"
                    if mx else "t += P{j}[c];").format(j=j)
            w("for (int kk = 0; kk < K; kk++) {")
            w(f"double t = {'-INFINITY' if mx else '0'}, cnt = 0;", 2)
            glob = r.op.startswith("g")
            w("for (int seg = 0; seg < nseg; seg++) {" if glob else
              "for (int seg = kk; seg < nseg; seg += K) {", 2)
            if glob:
                w("if (seg % K != kk) continue;", 3)
            else:
                w(f"t = {'-INFINITY' if mx else '0'}; cnt = 0;", 3)
            w("cnt += (double)(numel[seg / K] / K);", 3)
            w(f"for (int c = first[seg]; c < first[seg + 1]; c++) {comb}", 3)
            if not glob:
                w(f"{dst} = (T)({self.finish(r.op, 't', 'cnt')});", 3)
            w("}", 2)
            if glob:
                w("for (int seg = kk; seg < nseg; seg += K)", 2)
                w(f"{dst} = (T)({self.finish(r.op, 't', 'cnt')});", 3)
            w("}")
            w(f"free(P{j});")
        w("}")

    def scalar_reductions(self, reds: list[_Ins]) -> None:
        """Global reductions of uniform or per-tensor values: one term per tensor."""
        c = self.c
        for r in reds:
            x = r.args[0]
            mx = r.op.endswith("max")
            self.w("for (int kk = 0; kk < K; kk++) {")
            self.w(f"double t = {'-INFINITY' if mx else '0'}, cnt = 0;", 2)
            self.w("for (int seg = kk; seg < nseg; seg += K) {", 2)
            self.w("const int i = seg / K, k = seg % K;", 3)
            self.w("(void)i;", 3)
            v = (f"(T)host[k * NH + {c.host.index(x)}]" if c.kind[x] == "H"
                 else self.sval(x))
            self.w(f"const double x = (double){v};", 3)
            self.w("cnt += 1;", 3)
            self.w("t = (t != t || x != x) ? NAN : (x > t ? x : t);" if mx else "t += x;", 3)
            self.w("}", 2)
            self.w("for (int seg = kk; seg < nseg; seg += K)", 2)
            self.w(f"S[{self.sregs.index(r.dest)} * nseg + seg] = "
                   f"(T)({self.finish(r.op, 't', 'cnt')});", 3)
            self.w("}")

    @staticmethod
    def finish(op: str, t: str, cnt: str) -> str:
        if op.endswith("mean"):
            return f"{t} / {cnt}"
        if op.endswith("max"):
            return f"({cnt} > 0 ? {t} : NAN)"
        return t

    def final_pass(self) -> None:
        c = self.c
        plan = c.plan
        update = c.outputs[0]
        stores: list[tuple[str, int]] = [("w", update)]
        late: list[tuple[str, int]] = []
        for name, r_old, r_new in zip(plan.slots, plan.slot_regs, c.outputs[1:], strict=True):
            if r_new == r_old:
                continue  # unchanged
            (stores if plan.slot_shapes[name] == FULL else late).append((name, r_new))
        roots = [r for _, r in stores]
        ins = self.closure(roots)
        hs, ss, fs = self.scalars_of(ins, roots)
        out_regs = {}
        for name, _ in stores:
            reg = plan.input_regs["w"] if name == "w" and "w" in plan.input_regs else (
                plan.slot_regs[plan.slots.index(name)] if name != "w" else None)
            out_regs[name] = reg
        w = self.w
        w("/* final pass: w <- w - update, full-size slots in place */")
        self.chunk_loop(hs, ss, fs)
        for name, _ in stores:
            reg = out_regs[name]
            if reg is None or reg not in fs:
                a = self.arr[name]
                w(f"T *restrict o_{name} = (T *)ptrs[{a} * n + i] + (int64_t)k * len;", 2)
        w("#pragma omp simd", 2)
        w("for (int64_t e = lo; e < hi; e++) {", 2)
        self.loads(fs, 3)
        self.body(ins, 3)
        for name, r in stores:
            reg = out_regs[name]
            dst = f"p{reg}[e]" if reg is not None and reg in fs else f"o_{name}[e]"
            if name == "w":
                wv = self.name(reg) if reg is not None and reg in fs else dst
                w(f"{dst} = {wv} - {self.name(r)};", 3)
            else:
                w(f"{dst} = {self.name(r)};", 3)
        w("}", 2)
        w("}")
        if late:
            w("/* 1 x 1 slots, after every pass has read their old values */")
            self.seg_loop_open()
            srcs = {r for _, r in late}
            self.seg_header({r for r in srcs if c.kind[r] == "H"},
                            {r for r in srcs if c.kind[r] == "S"}, set(), 2)
            # read every new value before writing any (a slot may take another's value)
            for name, r in late:
                w(f"const T new_{name} = {self.name(r)};", 2)
            for name, _ in late:
                w(f"((T *)ptrs[{self.arr[name]} * n + i])[k] = new_{name};", 2)
            w("}")

