"""What the benchmark compares: zoo optimizers and user program files.

``"adamw"`` names a zoo optimizer (its space comes from the catalog);
anything ending in ``.py`` or containing a path separator is a program file
(parsed as text, never imported; its space is
:func:`~optforge.bench.space.default_space`, where the file's comment lines
``# space: NAME = [KIND, LOW, HIGH]`` override or add dimensions, e.g.
``# space: lr = ["log", 1e-3, 1.0]``, written by a search around the learning
rate it found best). A program file's label is its file stem.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from .. import zoo
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

    @classmethod
    def from_dict(cls, d: dict) -> Candidate:
        """Back from :meth:`as_dict` (a run store's copy: no file or zoo lookup); ``space`` may
        also be a list of ``[name, [kind, low, high]]`` pairs (its order is the sampling order)."""
        program = Program.parse(d["program"])
        space = parse_space(dict(d["space"]), program, where=f"stored space of {d['label']!r}")
        return cls(d["label"], program, space, d["origin"])


def resolve(spec: str) -> Candidate:
    """A candidate from a zoo name or a program file path (:func:`optforge.zoo.resolve`);
    precise errors for bad input."""
    found = zoo.resolve(spec)
    program = found.program
    if found.path is not None:
        where = spec.strip()
        space = {**default_space(program), **_declared_space(found.text, program, where)}
        return Candidate(found.label, program, space, str(found.path))
    space = parse_space(found.entry.space, program,
                        where=f"zoo/catalog.toml [{found.label}] space")
    if "lr" not in space:
        space = {"lr": Dim(*DEFAULT_LR), **space}
    return Candidate(found.label, program, space, "zoo")


SPACE_COMMENT = "# space:"


def _declared_space(text: str, program: Program, where: str) -> Space:
    """The ``# space: NAME = [KIND, LOW, HIGH]`` comment lines of a program file."""
    lines = [line.strip()[len(SPACE_COMMENT):] for line in text.splitlines()
             if line.strip().startswith(SPACE_COMMENT)]
    if not lines:
        return {}
    try:
        declared = tomllib.loads("\n".join(lines))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{where}: bad '{SPACE_COMMENT}' line: {err}") from None
    return parse_space(declared, program, where=f"{where} '{SPACE_COMMENT}' lines")


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
