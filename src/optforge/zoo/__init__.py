"""The zoo: the literature's optimizers as program files.

Each optimizer is a program file ``programs/NAME.py`` (parsed as text, never
imported) and an entry in ``catalog.toml`` with its citation, the reference
implementation it is verified against, its tuning search space, notes on its
formulation and the settings the verification runs. ``python -m
optforge.zoo.verify`` compares every program with its reference (see
:mod:`optforge.zoo.verify`); ``README.md`` lists the optimizers and what the
language cannot express.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from ..lang.ir import Program


@dataclass(frozen=True)
class Entry:
    """Catalog facts of one zoo optimizer."""

    name: str
    title: str
    citation: str
    reference: str
    space: dict[str, list] = field(default_factory=dict)
    notes: str = ""
    settings: list[dict[str, float]] = field(default_factory=list)
    hessian: dict[str, str] = field(default_factory=dict)
    """For programs that read ``h``: ``distribution`` of the Hutchinson probe and the
    hyperparameter (``every``) holding the refresh period."""


def _root():
    return resources.files(__package__)


@cache
def _catalog() -> dict[str, Entry]:
    data = tomllib.loads((_root() / "catalog.toml").read_text())
    return {name: Entry(name=name, **fields) for name, fields in data.items()}


def names(pattern: str | None = None) -> list[str]:
    """Names of the zoo optimizers, sorted; with ``pattern``, those matching the glob
    (case-insensitive, as pytorch-optimizer's ``get_supported_optimizers('adam*')``)."""
    known = sorted(_catalog())
    if pattern is None:
        return known
    return [n for n in known if fnmatch.fnmatchcase(n, pattern.lower())]


def entry(name: str) -> Entry:
    """Catalog facts for ``name``; raises KeyError naming the known optimizers."""
    try:
        return _catalog()[name]
    except KeyError:
        raise KeyError(f"no zoo optimizer {name!r}; known: {', '.join(names())}") from None


def source(name: str) -> str:
    entry(name)
    return (_root() / "programs" / f"{name}.py").read_text()


@cache
def load(name: str) -> Program:
    """The program of zoo optimizer ``name`` (lower case, e.g. ``adamw``)."""
    return Program.parse(source(name))


@dataclass(frozen=True)
class Resolved:
    """What :func:`resolve` found: a zoo optimizer (``entry``) or a program file (``path``)."""

    program: Program
    text: str  # the program's source
    entry: Entry | None = None
    path: Path | None = None

    @property
    def label(self) -> str:
        """The zoo name, or the file's stem (``path/to/my_rule.py`` -> ``my_rule``)."""
        return self.entry.name if self.entry is not None else self.path.stem


def is_file_spec(spec: str) -> bool:
    """Whether ``spec`` names a program file: it ends in ``.py``, holds a path separator, or
    is an existing file; anything else is a zoo name."""
    return (spec.endswith(".py") or "/" in spec or os.sep in spec
            or (os.altsep is not None and os.altsep in spec) or Path(spec).is_file())


def resolve(spec: str | Path) -> Resolved:
    """The one reading of "a zoo name or a program file" (bench, search, export,
    ``create_optimizer``): a program file by :func:`is_file_spec`, parsed and never imported
    (ValueError naming a missing or malformed file), else a zoo name, case and surrounding
    space ignored (KeyError naming the known optimizers)."""
    if isinstance(spec, Path):
        spec = str(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"an optimizer is a zoo name or a program file, got {spec!r}")
    spec = spec.strip()
    if is_file_spec(spec):
        program, text = Program.read(spec)
        return Resolved(program, text, path=Path(spec))
    name = spec.lower()
    if name not in _catalog():
        raise KeyError(f"{spec!r} is neither a program file nor a zoo optimizer (no zoo "
                       f"optimizer {name!r}; known: {', '.join(names())})")
    return Resolved(load(name), source(name), entry=entry(name))


def options(name: str, **hyper: float) -> dict:
    """Keyword options besides hyperparameters that ``ProgramOptimizer`` needs to run
    zoo optimizer ``name`` as its reference does: for programs that read ``h``, the
    Hutchinson law and the refresh period (the program's ``every`` hyperparameter,
    from ``hyper`` or the program's default)::

        ProgramOptimizer(params, load("sophiah"), lr=1.0, **options("sophiah", k=3), k=3)
    """
    e = entry(name)
    if not e.hessian:
        return {}
    key = e.hessian["every"]
    every = hyper.get(key, load(name).hyperparameters[key])
    return {"hessian_distribution": e.hessian["distribution"], "hessian_every": int(every)}
