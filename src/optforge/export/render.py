"""The exported file: one program as a standalone ``torch.optim.Optimizer`` subclass.

:func:`render` returns the text of a Python module that imports only the standard
library and torch: a docstring with the update rule as formulas, its origin and
recommended hyperparameters; the helpers the step calls (the source of
:mod:`optforge.lang.helpers`' functions); the update function that
:mod:`optforge.export.lower` prints from the optimizer's kernel plan; and the
optimizer class with ``defaults``, argument checks raising ``ValueError``, lazily
created state, ``state_dict``/``load_state_dict`` (which also reads the state of a
``ProgramOptimizer`` running the same program), a multi-tensor step and, with
``compile=True``, the compiled C step of :mod:`optforge.export.cstep`.
"""

from __future__ import annotations

import keyword
import math
import textwrap
from dataclasses import dataclass, field

from ..lang.canon import state_hash
from ..lang.ir import Program, format_number
from ..lang.symbolic import formula
from .cstep import NAMES as C_NAMES
from .cstep import CSection, c_section, class_init_line, class_step_lines
from .lower import HELPERS, LINE, ExportError, Lowered, helpers_used, lower

CLASS_RESERVED = frozenset({
    "params", "lr", "compile", "hessian_every", "hessian_distribution", "self", "defaults",
    "closure", "torch", "math", "numbers", "super", "isinstance", "bool", "int", "ValueError",
})
"""Names a hyperparameter cannot have: the class uses them itself."""


@dataclass(frozen=True)
class Origin:
    """Where an exported program comes from; every field is optional.

    ``run``, ``rank`` and ``fitness`` name a search result (a run directory and the
    rank in its hall of fame), ``lr`` its recommended learning rate; ``hessian_every``
    is the Hutchinson refresh period, an int or the name of the hyperparameter that
    holds it (the zoo's Sophia-H: ``"k"``).
    """

    source: str = ""  # e.g. "zoo optimizer adamw", "program file my_rule.py"
    title: str = ""
    citation: str = ""
    reference: str = ""
    notes: str = ""
    run: str | None = None
    rank: int | None = None
    fitness: float | None = None
    space: dict[str, list] = field(default_factory=dict)
    hessian_distribution: str = "rademacher"
    hessian_every: int | str = 1
    lr: float | None = None  # recommended learning rate (a search run's best), if known


def check_class_name(name: str) -> None:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ExportError(f"class name {name!r} is not a Python identifier")
    if name.startswith("_") or name in CLASS_RESERVED or name in C_NAMES:
        raise ExportError(f"class name {name!r} is reserved in the exported file")


def render(program: Program, class_name: str, *, lr: float = 1e-3,
           hyperparameters: dict[str, float] | None = None, origin: Origin | None = None,
           module: str = "my_optimizer") -> str:
    """The text of the exported module (see the module docstring).

    ``lr`` and ``hyperparameters`` are the recommended values, the constructor's
    defaults (the program's own defaults where not given); ``module`` is the file's
    module name, for the usage example.
    """
    origin = origin or Origin()
    check_class_name(class_name)
    bad = [k for k, _ in program.hyper if k in CLASS_RESERVED or k.startswith("_")]
    if bad:
        raise ExportError(f"hyperparameter name(s) {bad} clash with the optimizer's own "
                          "arguments; rename them in the program")
    try:
        lr = float(lr)
    except (TypeError, ValueError):
        raise ExportError(f"lr must be a number, got {lr!r}") from None
    if not math.isfinite(lr) or lr < 0:
        raise ExportError(f"lr must be a finite number >= 0, got {lr!r}")
    try:
        program = program.with_hyper(**(hyperparameters or {}))
    except (KeyError, ValueError) as err:
        raise ExportError(str(err.args[0])) from None
    lo = lower(program)
    if class_name in (lo.function, lo.kernels):
        raise ExportError(f"class name {class_name!r} is the update function's name")
    cs = c_section(lo.program)
    every = origin.hessian_every
    if lo.reads_hessian and isinstance(every, str) and every not in program.hyperparameters:
        raise ExportError(f"hessian_every names {every!r}, which is not a hyperparameter")
    code = "\n\n\n".join(part.strip("\n") for part in [
        _helpers(lo), lo.source, cs.code, _class(lo, class_name, program, lr, origin, cs),
    ])
    head = _docstring(program, lo, class_name, lr, origin, module)
    std = {"import math", "import numbers", *cs.imports} - {"import torch"}
    imports = [*sorted(std, key=lambda i: (i.startswith("from"), i)), "", "import torch"]
    return "\n".join([head, "", *imports, "", f'__all__ = ["{class_name}"]', "", "", code]) + "\n"


# ------------------------------------------------------------------ docstring


def _docstring(program: Program, lo: Lowered, name: str, lr: float, origin: Origin,
               module: str) -> str:
    title = origin.title or program.name
    par: list[str] = [f"{title}: a torch optimizer exported by optforge (class ``{name}``)."]
    if program.doc:
        par.append(program.doc.strip())
    rule = [f"    {line}" for line in formula(lo.program).splitlines()]
    slots = ", ".join(lo.program.slots)
    par.append(
        "The update, at step t = 1, 2, ... for every parameter w with gradient g"
        + (f" (state {slots}, zero at the start; x_{{t-1}} is a state's value before the "
           "step, x_{t} after it)" if slots else "")
        + (", where h is a Hutchinson estimate of the Hessian diagonal" if lo.reads_hessian
           else "") + ":")
    par.append("\n".join(rule))
    par.append(_tensors_note(lo))
    par.append(_origin(origin))
    hyper = ", ".join([f"lr={format_number(lr)}"]
                      + [f"{k}={format_number(v)}" for k, v in program.hyper])
    par.append(f"Recommended hyperparameters (the constructor's defaults): {hyper}.")
    if origin.space:
        ranges = ", ".join(f"{k} in [{v[1]:g}, {v[2]:g}] ({v[0]})"
                           for k, v in origin.space.items())
        par.append(f"Tuning ranges: {ranges}.")
    if lo.reads_hessian:
        par.append("h is recomputed before every hessian_every-th step, so gradients must "
                   "come from loss.backward(create_graph=True).")
    par.append(f"Usage::\n\n    from {module} import {name}\n\n"
               f"    opt = {name}(model.parameters(), lr={format_number(lr)})")
    source = textwrap.indent(str(program).rstrip(), "    ")
    par.append(f"The program, in optforge's language::\n\n{source}")
    par.append("Generated by ``optforge export``; depends only on torch (and, with "
               "compile=True, a C compiler).")
    text = "\n\n".join(_wrap_paragraph(p) for p in par if p)
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return f'"""{text}\n"""'


def _tensors_note(lo: Lowered) -> str:
    if lo.matrix:
        return ("Each parameter is seen as a matrix R x C: R = shape[0], C = the product "
                "of the other dimensions (a vector of n is n x 1, a scalar 1 x 1); "
                "row, column and matrix ops act on that view, norm, mean, sum and the like "
                "on the whole tensor, global ops on all parameters of a group with a "
                "gradient. State tensors have the view's shapes.")
    return ("Element-wise ops act entry by entry; norm, mean, sum and the like on each "
            "whole tensor; global ops on all parameters of a group with a gradient.")


def _origin(origin: Origin) -> str:
    out = []
    if origin.source:
        out.append(f"Origin: {origin.source}" + (f", {origin.title}" if origin.title else "")
                   + ".")
    if origin.run is not None or origin.rank is not None or origin.fitness is not None:
        bits = []
        if origin.run is not None:
            bits.append(f"run {origin.run}")
        if origin.rank is not None:
            bits.append(f"rank {origin.rank} in its hall of fame")
        if origin.fitness is not None:
            bits.append(f"fitness {origin.fitness:.6g}")
        out.append("Search result: " + ", ".join(bits) + ".")
    if origin.citation:
        out.append(f"Citation: {origin.citation}.")
    if origin.reference:
        out.append(f"Reference implementation: {origin.reference}.")
    if origin.notes:
        out.append(f"Notes: {origin.notes}")
    return "\n".join(out)


def _wrap_paragraph(text: str) -> str:
    """Wrap prose to the line length; indented blocks (code, formulas) keep their lines
    and only break (with a deeper indent) where they are too long."""
    lines: list[str] = []
    for line in text.split("\n"):
        if line.startswith(" ") or not line:
            indent = line[: len(line) - len(line.lstrip())]
            lines += textwrap.wrap(line, LINE - 4, subsequent_indent=indent + "    ",
                                   break_on_hyphens=False) or [""]
        else:
            lines += textwrap.wrap(line, LINE - 4, break_on_hyphens=False)
    return "\n".join(lines)


# ------------------------------------------------------------------ helpers


_CHECK = '''
def _check(name, value):
    """A hyperparameter is a finite real number (or a 0-d real tensor); the learning rate is
    not negative."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if name == "lr" and value < 0:
        raise ValueError(f"invalid learning rate: {value}")
'''

_MATRIX = '''
def _matrix(t):
    """The 2-D view R x C of a tensor (a copy if it is not contiguous)."""
    rows = t.shape[0] if t.dim() else 1
    return t.contiguous().view(rows, math.prod(t.shape[1:]))
'''


def _helpers(lo: Lowered) -> str:
    parts = [_CHECK.strip()]
    if lo.matrix:
        parts.append(_MATRIX.strip())
    parts += [HELPERS[h].strip() for h in helpers_used(lo.source)]
    return "\n\n\n".join(parts)


# ------------------------------------------------------------------ the class


def _shape_code(shape, matrix: bool) -> str:
    """A state tensor's shape: the parameter's own, or 0-d for 1 x 1 (element-wise
    programs); the 2-D view's R x C, R x 1, ... (programs with matrix ops)."""
    if not matrix:
        return "p.shape" if shape == ("R", "C") else "()"
    names = {"R": "rows", "C": "cols", 1: "1"}
    return f"({names[shape[0]]}, {names[shape[1]]})"


def _class(lo: Lowered, name: str, program: Program, lr: float, origin: Origin,
           cs: CSection) -> str:
    hyper = lo.hyper
    h = lo.reads_hessian
    every = origin.hessian_every
    every_default = "None" if isinstance(every, str) else str(int(every))
    sig = ["self", "params", f"lr={format_number(lr)}"]
    sig += [f"{k}={format_number(v)}" for k, v in program.hyper]
    sig.append("*")
    if h:
        sig += [f"hessian_every={every_default}",
                f'hessian_distribution="{origin.hessian_distribution}"']
    sig.append("compile=False")
    args_doc = [
        "params: an iterable of parameters, or of dicts defining parameter groups.",
        f"lr: learning rate (default {format_number(lr)}"
        + (f"; tuned in [{origin.space['lr'][1]:g}, {origin.space['lr'][2]:g}], "
           f"{origin.space['lr'][0]} scale" if "lr" in origin.space else "") + ").",
    ]
    for k, v in program.hyper:
        line = f"{k}: hyperparameter of the update rule (default {format_number(v)}"
        if k in origin.space:
            scale, low, high = origin.space[k]
            line += f"; tuned in [{low:g}, {high:g}], {scale} scale"
        args_doc.append(line + ").")
    if h:
        when = (f"the value of {every}" if isinstance(every, str) else str(every))
        args_doc += [
            f"hessian_every: steps between refreshes of the Hessian estimate h "
            f"(default: {when}).",
            'hessian_distribution: law of the Hutchinson probe, "rademacher" or "gaussian".',
        ]
    args_doc.append("compile: run each step as optforge's generated C code, built with the "
                    "system C compiler ($CC, default gcc) and cached on disk (default False).")
    doc_args = "\n".join(
        textwrap.fill(a, LINE - 12, initial_indent=" " * 8, subsequent_indent=" " * 12)
        for a in args_doc)
    defaults = ", ".join(f'"{k}": {k}' for k in ["lr", *hyper])
    b: list[str] = [f"class {name}(torch.optim.Optimizer):"]
    b.append(f'    """The update rule of the module docstring as a torch optimizer.\n\n'
             f"    Args:\n{doc_args}\n"
             f'    """')
    b.append("")
    b.append(f'    _STATE = "{state_hash(program)}"  # identifies the program\'s state dicts')
    b.append("")
    b += _def(f"    def __init__({', '.join(sig)}):")
    line = f"        defaults = {{{defaults}}}"
    if len(line) <= LINE:
        b.append(line)
    else:
        b += ["        defaults = {",
              *(f'            "{k}": {k},' for k in ["lr", *hyper]),
              "        }"]
    b += ["        for _key, _value in defaults.items():",
          "            _check(_key, _value)"]
    if h:
        if isinstance(every, str):
            b += ["        if hessian_every is None:",
                  f"            hessian_every = {every}"]
        b += [
            "        if isinstance(hessian_every, bool) or not isinstance(hessian_every, "
            "numbers.Real) or (",
            "            hessian_every != int(hessian_every) or hessian_every < 1",
            "        ):",
            '            raise ValueError(f"hessian_every must be a positive integer, '
            'got {hessian_every!r}")',
            '        if hessian_distribution not in ("rademacher", "gaussian"):',
            '            raise ValueError("hessian_distribution must be \'rademacher\' or '
            '\'gaussian\', "',
            '                             f"got {hessian_distribution!r}")',
            "        self.hessian_every = int(hessian_every)",
            "        self.hessian_distribution = hessian_distribution",
        ]
    kept = ["_compile"] + (["hessian_every", "hessian_distribution"] if h else [])
    b += ["        self._compile = compile",
          "        super().__init__(params, defaults)",
          class_init_line(),
          "",
          "    def __getstate__(self):",
          '        """Pickling, copy.deepcopy and torch.save(opt): torch\'s state and the '
          'options."""',
          "        state = super().__getstate__()",
          *(f'        state["{k}"] = self.{k}' for k in kept),
          "        return state",
          "",
          "    def __setstate__(self, state):",
          '        """The inverse of __getstate__ (load_state_dict calls it too): the compiled '
          'step',
          '        is not state, it is rebuilt."""',
          "        super().__setstate__(state)",
          class_init_line(),
          "",
          "    def add_param_group(self, param_group):",
          '        """Add a parameter group; its hyperparameters are checked like the '
          'defaults."""',
          "        super().add_param_group(param_group)",
          "        group = self.param_groups[-1]",
          "        for key in self.defaults:",
          "            _check(key, group[key])",
          '        if any(p.is_complex() for p in group["params"]):',
          "            self.param_groups.pop()",
          "            raise ValueError(",
          f'                "{name} does not support complex parameters; optimize their "',
          '                "torch.view_as_real views"',
          "            )",
          ""]
    b += _state_methods(lo)
    b += _step_methods(lo, name, cs)
    if h:
        b += _hessian_method(name)
    return "\n".join(b).rstrip() + "\n"


def _def(line: str) -> list[str]:
    if len(line) <= LINE:
        return [line]
    head, _, rest = line.partition("(")
    args = rest[:-2]  # drop "):"
    return [f"{head}(", *textwrap.wrap(args, LINE - 8, initial_indent=" " * 8,
                                        subsequent_indent=" " * 8), "    ):"]


def _state_methods(lo: Lowered) -> list[str]:
    shapes = dict(lo.slot_shapes)
    keys = list(lo.slots) + (["h"] if lo.reads_hessian else [])
    if lo.reads_hessian:
        shapes["h"] = ("R", "C")
    b = ["    def _shapes(self, p):",
         '        """The shapes of the state tensors of parameter p."""']
    used = {d for k in keys for d in shapes[k]} if lo.matrix else set()
    if "R" in used:
        b.append("        rows = p.shape[0] if p.dim() else 1")
    if "C" in used:
        b.append("        cols = math.prod(p.shape[1:])")
    items = [f'"{k}": {_shape_code(shapes[k], lo.matrix)}' for k in keys]
    line = f"        return {{{', '.join(items)}}}"
    if len(line) <= LINE:
        b.append(line)
    else:
        b += ["        return {", *(f"            {i}," for i in items), "        }"]
    b += [
        "",
        "    def _init_state(self, p, state):",
        "        state[\"step\"] = 0",
        "        for key, shape in self._shapes(p).items():",
        "            state[key] = p.new_zeros(shape)",
        "",
        "    def state_dict(self):",
        '        """As torch\'s, with the program\'s state identity (checked on load)."""',
        "        state_dict = super().state_dict()",
        '        state_dict["program_state"] = self._STATE',
        "        return state_dict",
        "",
        "    def load_state_dict(self, state_dict):",
        '        """Load a state dict of this optimizer, or of optforge\'s ProgramOptimizer '
        'running',
        '        the same program (whose state tensors carry a leading replica axis); '
        'ValueError for',
        '        the state of another optimizer."""',
        '        if state_dict.get("program_state") != self._STATE:',
        "            raise ValueError(",
        '                "state_dict is not the state of this optimizer\'s update rule (it lacks '
        'this "',
        '                "program\'s program_state identity): it was saved by another '
        'optimizer"',
        "            )",
        '        state_dict = {k: v for k, v in state_dict.items()',
        '                      if k not in ("program", "program_state")}',
        "        super().load_state_dict(state_dict)",
        "        for p, state in self.state.items():",
        "            for key, shape in self._shapes(p).items():",
        "                if key in state and state[key].shape != shape:",
        "                    state[key] = state[key].reshape(shape)",
        "",
    ]
    return b


def _step_methods(lo: Lowered, name: str, cs: CSection) -> list[str]:
    h = lo.reads_hessian
    b = [
        "    @torch.no_grad()",
        "    def step(self, closure=None):",
        '        """One optimisation step; ``closure`` re-evaluates the model and returns the '
        'loss."""',
        "        loss = None",
        "        if closure is not None:",
        "            with torch.enable_grad():",
        "                loss = closure()",
    ]
    if h:
        b.append("        self._refresh_hessian()")
    b += [
        "        for group in self.param_groups:",
        "            buckets = {}",
        '            for p in group["params"]:',
        "                if p.grad is None:",
        "                    continue",
        "                if p.grad.is_sparse:",
        f'                    raise RuntimeError("{name} does not support sparse gradients")',
        "                state = self.state[p]",
        "                if not state:",
        "                    self._init_state(p, state)",
        '                buckets.setdefault(state["step"], []).append(p)',
        "            for step, params in buckets.items():",
        "                self._step(group, params, step + 1)",
        "        return loss",
        "",
        "    def _step(self, group, params, step):",
        '        """Update parameters that share a step count."""',
        "        states = [self.state[p] for p in params]",
        *class_step_lines(cs),
    ]
    if lo.matrix:
        b.append("        w = [_matrix(p) for p in params]")
        args = ["w", "[_matrix(p.grad) for p in params]"]
    else:
        args = ["params", "[p.grad for p in params]"]
    if h:
        args.append('[s["h"] for s in states]')
    args += [f'[s["{s}"] for s in states]' for s in lo.slots]
    if "lr" in lo.inputs:
        args.append('float(group["lr"])')
    if "step" in lo.inputs:
        args.append("float(step)")
    args += [f'float(group["{k}"])' for k in lo.hyper]
    new = [f"new_{i}" for i in range(len(lo.replaced))]
    call = f"{lo.function}("
    if new:
        call = f"{', '.join(new)}{',' if len(new) == 1 else ''} = {call}"
    b.append(f"        {call}")
    b += [f"            {a}," for a in args]
    b.append("        )")
    if new:
        loop = [f"t{i}" for i in range(len(new))]
        b.append(f"        for s, {', '.join(loop)} in zip(states, {', '.join(new)}, strict=True):")
        for slot, var in zip(lo.replaced, loop, strict=True):
            b.append(f'            s["{slot}"] = {var}')
        b.append("            s[\"step\"] = step")
    else:
        b += ["        for s in states:", "            s[\"step\"] = step"]
    if lo.matrix:
        b += ["        for p, x in zip(params, w, strict=True):",
              "            if not p.is_contiguous():",
              "                p.copy_(x.view_as(p))"]
    b.append("")
    return b


def _hessian_method(name: str) -> list[str]:
    return [
        "    def _refresh_hessian(self):",
        '        """h = z * (H z) for every parameter with a gradient (Hutchinson, one '
        'probe z',
        '        per parameter from the global torch generator, in parameter-group order), '
        'before',
        '        steps 1, 1 + k, 1 + 2k, ... (k = hessian_every); held in between."""',
        "        params = [p for group in self.param_groups for p in group[\"params\"]",
        "                  if p.grad is not None]",
        "        if not params:",
        "            return",
        "        for p in params:",
        "            if not self.state[p]:",
        "                self._init_state(p, self.state[p])",
        '        if self.state[params[0]]["step"] % self.hessian_every != 0:',
        "            return",
        "        if any(p.grad.grad_fn is None for p in params):",
        "            raise RuntimeError(",
        f'                "{name} reads a Hessian estimate: call '
        'loss.backward(create_graph=True) "',
        '                "before step()"',
        "            )",
        '        if self.hessian_distribution == "gaussian":',
        "            zs = [torch.randn_like(p) for p in params]",
        "        else:",
        "            zs = [torch.randint_like(p, 0, 2) * 2.0 - 1.0 for p in params]",
        "        with torch.enable_grad():",
        "            hzs = torch.autograd.grad([p.grad for p in params], params, "
        "grad_outputs=zs)",
        "        for p, z, hz in zip(params, zs, hzs, strict=True):",
        '            h = self.state[p]["h"]',
        "            h.copy_((z * hz).reshape(h.shape))",
        "",
    ]


__all__ = ["CLASS_RESERVED", "Origin", "check_class_name", "render"]
