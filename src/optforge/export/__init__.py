"""``optforge export``: any program as a standalone ``torch.optim.Optimizer`` file.

:func:`export_source` turns a program into the text of a Python module that
depends only on torch (:mod:`.render` writes the file around the update function
that :mod:`.lower` prints from the kernel plan ``ProgramOptimizer`` runs);
:func:`resolve` reads a program file, a zoo name or a search run directory (a rank in
its hall of fame, :mod:`.run`); :func:`export` does both and
writes the file. The program is never executed: the file is generated from its IR.
"""

from __future__ import annotations

from pathlib import Path

from .. import zoo
from ..lang.ir import Program
from .lower import ExportError, lower
from .render import Origin, check_class_name, render
from .run import resolve_run


def resolve(spec: str, rank: int | None = None) -> tuple[Program, Origin]:
    """A program and its origin from a zoo name, a program file path, or a search run
    directory (``rank`` in its hall of fame, 1 = the fittest, the default;
    :func:`optforge.export.run.resolve_run`)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ExportError(f"SOURCE is a program file, a zoo name or a run directory, got "
                          f"{spec!r}")
    spec = spec.strip()
    path = Path(spec)
    if path.is_dir():
        return resolve_run(path, 1 if rank is None else rank)
    if rank is not None:
        raise ExportError(f"--rank applies to a search run directory; {spec!r} is not a "
                          "directory")
    try:
        found = zoo.resolve(spec)
    except KeyError as err:
        raise ExportError(err.args[0]) from None
    except ValueError as err:
        raise ExportError(str(err)) from None
    if found.path is not None:
        return found.program, Origin(source=f"program file {found.path.name}")
    e = found.entry
    hessian = {}
    if e.hessian:
        hessian = {"hessian_distribution": e.hessian["distribution"],
                   "hessian_every": e.hessian["every"]}
    origin = Origin(source=f"zoo optimizer {e.name}", title=e.title, citation=e.citation,
                    reference=e.reference, space=dict(e.space), **hessian)
    return found.program, origin


def class_name_for(program: Program, origin: Origin | None = None) -> str:
    """A default class name: the zoo title or the program name in CamelCase."""
    base = (origin.title if origin and origin.title else "") or program.name
    words = "".join(ch if ch.isalnum() else " " for ch in base).split()
    name = "".join(w[:1].upper() + w[1:] for w in words) or "Exported"
    return name if name[0].isalpha() else f"Opt{name}"


def export_source(program: Program | str, name: str | None = None, *,
                  lr: float | None = None, hyperparameters: dict[str, float] | None = None,
                  origin: Origin | None = None, module: str = "my_optimizer") -> str:
    """The exported module's text for ``program`` (a Program or program text); ``lr``
    defaults to the origin's recommended rate, else 1e-3."""
    if isinstance(program, str):
        program = Program.parse(program)
    if lr is None:
        lr = origin.lr if origin is not None and origin.lr is not None else 1e-3
    return render(program, name or class_name_for(program, origin), lr=lr,
                  hyperparameters=hyperparameters, origin=origin, module=module)


def export(source: str, out: str | Path | None = None, name: str | None = None, *,
           lr: float | None = None, hyperparameters: dict[str, float] | None = None,
           overwrite: bool = False, return_class_name: bool = False,
           rank: int | None = None):
    """Export ``source`` (a program file, a zoo name, or a run directory with ``rank`` in
    its hall of fame) to the file ``out`` (default ``<program name>_optimizer.py``);
    returns its path (and the class name if asked). ``lr`` defaults to the run's
    recommended rate (a run directory), else 1e-3."""
    program, origin = resolve(source, rank)
    out = Path(out) if out is not None else Path(f"{program.name}_optimizer.py")
    if out.suffix != ".py":
        raise ExportError(f"the output file {str(out)!r} must end in .py")
    if out.is_dir() or (out.exists() and not overwrite):
        raise ExportError(f"{out} exists; pass overwrite=True (--force) to replace it")
    name = name or class_name_for(program, origin)
    text = export_source(program, name, lr=lr, hyperparameters=hyperparameters, origin=origin,
                         module=out.stem if out.stem.isidentifier() else "my_optimizer")
    out.write_text(text)
    return (out, name) if return_class_name else out


__all__ = ["ExportError", "Origin", "check_class_name", "class_name_for", "export",
           "export_source", "lower", "render", "resolve", "resolve_run"]
