"""The exported file's ``compile=True``: optforge's compiled C step, embedded.

:func:`c_section` returns what :mod:`optforge.export.render` puts in the file:

* the imports of :mod:`optforge.optim.ckernel` (standard library only, beside torch);
* that module's code after its imports, verbatim (build with the system C
  compiler, cache on disk, call through ctypes: the very runtime of
  ``ProgramOptimizer(compile=True)``, so the two cannot drift);
* ``_C_SOURCE``: the program's C step per dtype (:mod:`optforge.lang.ccode`) as
  string literals, lines longer than the file's limit folded by a backslash-newline
  (which Python's string literal drops), so the text built is byte for byte
  ``ProgramOptimizer``'s (one cache entry for both) for a program without dead code
  (the section is built from the live program, as the update function is);
* ``_compiled_step(name)``: a :class:`~optforge.optim.ckernel.KernelStep`, or None
  with a warning (no C compiler, an unusable cache; a program with matrix ops, for
  which no C is generated and the section is only this function).

The class calls ``_compiled_step`` at construction when ``compile=True`` and tries
the C step first on each bucket (:func:`class_init_line`, :func:`class_step_lines`);
``KernelStep.run`` declines (eager step) anything but dense, contiguous
float32/float64 tensors on the CPU.
"""

from __future__ import annotations

import ast
import inspect
import json
from dataclasses import dataclass

from ..lang.ccode import CCode, Unsupported
from ..lang.ir import Program
from ..lang.runtime import Plan
from ..lang.shapes import SCALAR
from ..optim import ckernel
from .lower import LINE

_TREE = ast.parse(inspect.getsource(ckernel)).body
NAMES = frozenset({
    *(n.name for n in _TREE if isinstance(n, ast.FunctionDef | ast.ClassDef)),
    *(t.id for n in _TREE if isinstance(n, ast.Assign) for t in n.targets
      if isinstance(t, ast.Name)),
    *((a.asname or a.name).split(".")[0] for n in _TREE
      if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names),
    "warnings", "_C_SOURCE", "_compiled_step",
})
"""The module-level names the section binds (imports included): the exported class
cannot have them (a program's functions are named ``<name>_update`` and
``<name>_kernels``, which none of them is)."""


@dataclass(frozen=True)
class CSection:
    imports: list[str]  # import statements the section needs
    code: str  # module-level code
    arrays: list[str]  # the kernel's pointer arrays (w, g, h, slots), empty when unsupported
    inputs: list[str]  # its per-step inputs (lr, step, hyperparameters)


def runtime_parts() -> tuple[list[str], str]:
    """:mod:`optforge.optim.ckernel` split into its import statements and the code after
    them (verbatim)."""
    source = inspect.getsource(ckernel)
    tree = ast.parse(source)
    imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    lines = source.splitlines(keepends=True)
    statements = [ast.get_source_segment(source, n) for n in imports]
    return statements, "".join(lines[imports[-1].end_lineno:]).strip("\n") + "\n"


def fold(c: str, width: int = LINE - 1) -> str:
    """C text with lines over ``width`` folded by backslash-newline (dropped again in a
    Python string literal; in C, too, a line splice)."""
    out = []
    for line in c.split("\n"):
        while len(line) > width:
            out.append(line[:width - 1] + "\\")
            line = line[width - 1:]
        out.append(line)
    return "\n".join(out)


def c_section(program: Program) -> CSection:
    """The module-level code of an exported program's compiled step; ``program`` is the
    live program the update function is printed from (:func:`~optforge.export.lower.lower`),
    so the step's arrays are the class's state slots."""
    try:
        code = CCode(Plan(program))
    except Unsupported as exc:
        why = str(exc)
        text = "\n".join([
            "def _compiled_step(name):",
            '    """None, with a warning: the program has no compiled step (optforge\'s C step',
            '    leaves matrix ops to torch)."""',
            "    why = (",
            *(f"        {json.dumps(why[i:i + 70])}" for i in range(0, len(why), 70)),
            "    )",
            '    warnings.warn(f"compile=True: {name} runs eagerly ({why})", stacklevel=3)',
            "    return None",
        ]) + "\n"
        return CSection(["import warnings"], text, [], [])
    imports, body = runtime_parts()
    state_arrays = [a for a in code.arrays if a not in ("w", "g")]
    scalar = tuple(code.plan.slot_shapes.get(a) == SCALAR for a in state_arrays)
    sources = []
    for ctype in ("float", "double"):
        c = code.source(ctype)
        if '"""' in c or "\\" in c:
            raise AssertionError("C source with a backslash or triple quote")  # never: ccode
        sources.append(f'    "{ctype}": """\\\n{fold(c).rstrip()}\n""",')
    text = "\n".join([
        "# ---- the compiled step (compile=True): optforge.optim.ckernel, verbatim ----",
        "",
        body.rstrip(),
        "# ---- end of optforge.optim.ckernel ----",
        "",
        "",
        f"_C_SOURCE = {{  # the {program.name} step per entry type (optforge.lang.ccode)",
        *sources,
        "}",
        "",
        "",
        "def _compiled_step(name):",
        '    """The compiled step (its float32 kernel built or loaded now), or None with a',
        '    warning where it cannot be built."""',
        f"    step = KernelStep(_C_SOURCE.__getitem__, {scalar!r})",
        "    try:",
        "        step.kernel(torch.float32)",
        "    except (KernelCompileError, OSError) as exc:  # OSError: an unusable cache",
        '        warnings.warn(f"compile=True: {name} runs eagerly ({exc})", stacklevel=3)',
        "        return None",
        "    return step",
    ]) + "\n"
    return CSection([*imports, "import warnings"], text, list(code.arrays), list(code.inputs))


def class_init_line() -> str:
    """The constructor's line (after ``super().__init__``) that builds the step."""
    return ("        self._c_step = _compiled_step(self.__class__.__name__) if self._compile "
            "else None")


def class_step_lines(section: CSection) -> list[str]:
    """The first lines of the class's ``_step(group, params, step)`` (``states`` bound):
    the compiled step, returning when it ran."""
    if not section.arrays:
        return []
    fresh, state = [], []
    for name in section.arrays:
        if name == "w":
            fresh.append("params")
        elif name == "g":
            fresh.append("[p.grad for p in params]")
        else:
            state.append(f'[s["{name}"] for s in states]')
    inputs = ", ".join("float(step)" if n == "step" else f'float(group["{n}"])'
                       for n in section.inputs)
    kept = ["            [", *(f"                {a}," for a in state), "            ],"] \
        if state else ["            [],"]
    call = [
        "        if self._c_step is not None and self._c_step.run(",
        f"            [{', '.join(fresh)}],",
        *kept,
        f"            [{inputs}],",
        "        ):",
        "            for s in states:",
        '                s["step"] = step',
        "            return",
    ]
    return [line for part in call for line in _wrap(part)]


def _wrap(line: str) -> list[str]:
    if len(line) <= LINE:
        return [line]
    indent = line[: len(line) - len(line.lstrip())]
    body = line.strip().rstrip(",")
    if body.startswith("[") and body.endswith("]"):
        items = [i.strip() for i in body[1:-1].split(", ")]
        return [f"{indent}[", *(f"{indent}    {i}," for i in items), f"{indent}],"]
    return [line]
