"""What the benchmark compares: zoo optimizers and user program files.

``"adamw"`` names a zoo optimizer (its space comes from the catalog);
anything ending in ``.py`` or containing a path separator is a program file
(parsed as text, never imported; its space is
:func:`~optforge.bench.space.default_space`). A program file's label is its
file stem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import zoo
from ..lang.errors import ProgramError
from ..lang.ir import Program
from .space import DEFAULT_LR, Dim, Space, default_space, parse_space


@dataclass(frozen=True)
class Candidate:
    """One optimizer under comparison."""

    label: str
    program: Program
    space: Space
    origin: str  # "zoo" or the program file's path

    def as_dict(self) -> dict:
        return {"label": self.label, "origin": self.origin, "program": str(self.program),
                "space": {k: d.as_list() for k, d in self.space.items()}}


def is_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or "/" in spec


def resolve(spec: str) -> Candidate:
    """A candidate from a zoo name or a program file path; precise errors for bad input."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"an optimizer is a zoo name or a program file, got {spec!r}")
    spec = spec.strip()
    if is_path(spec):
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"program file {spec!r} does not exist")
        try:
            program = Program.parse(path.read_text())
        except ProgramError as err:
            raise ValueError(f"{spec}: {err}") from None
        return Candidate(path.stem, program, default_space(program), str(path))
    entry = zoo.entry(spec.lower())  # KeyError naming the known optimizers
    program = zoo.load(entry.name)
    space = parse_space(entry.space, program, where=f"zoo/catalog.toml [{entry.name}] space")
    if "lr" not in space:
        space = {"lr": Dim(*DEFAULT_LR), **space}
    return Candidate(entry.name, program, space, "zoo")


def resolve_all(specs: list[str], baseline: str = "adamw") -> list[Candidate]:
    """Resolve ``specs``; the baseline comes first (added if missing); labels must be unique."""
    base = resolve(baseline)
    cands = [resolve(s) for s in specs]
    labels = [c.label for c in cands]
    if base.label in labels:
        base = cands.pop(labels.index(base.label))
    cands.insert(0, base)
    seen: dict[str, str] = {}
    for c in cands:
        if c.label in seen:
            raise ValueError(f"two optimizers are labelled {c.label!r} ({seen[c.label]} and "
                             f"{c.origin}); rename one program file")
        seen[c.label] = c.origin
    return cands
