"""What a search returns: the hall of fame, the Pareto front, the winners.

A :class:`Candidate` is an evaluated program seen through its live part (dead
code removed, :func:`optforge.lang.canon.eliminate_dead_code`): ``length`` is
its number of op calls and ``slots`` its number of state slots (state memory,
in parameter-sized-or-smaller tensors).

* Hall of fame: the ``n`` fittest complete evaluations, one per behaviour
  (equal fingerprints keep the shortest program).
* Pareto front: the candidates no other candidate dominates, maximising
  fitness while minimising length and slots (``a`` dominates ``b`` when it is
  at least as good in all three and strictly better in one; of several
  candidates with equal objectives the first in the ranking stays).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..evaluation import Evaluation
from ..lang.canon import eliminate_dead_code
from ..lang.ir import Program
from .evolution import Individual
from .filters import rejections_note
from .mutate import length as program_length


@dataclass(frozen=True)
class Candidate:
    """An evaluated program (see the module docstring)."""

    id: int
    program: Program
    fitness: float
    length: int
    slots: int
    hash: str = ""
    fingerprint: str = ""
    mutation: str = "init"
    parent: int | None = None
    evaluation: Evaluation = field(default_factory=lambda: Evaluation(-math.inf))

    @classmethod
    def of(cls, ind: Individual) -> Candidate:
        live = eliminate_dead_code(ind.program)
        return cls(ind.id, live, ind.fitness, program_length(live), len(live.slots), ind.hash,
                   ind.fingerprint, ind.mutation, ind.parent, ind.evaluation)

    @property
    def source(self) -> str:
        return str(self.program)

    def dominates(self, other: Candidate) -> bool:
        ge = (self.fitness >= other.fitness and self.length <= other.length
              and self.slots <= other.slots)
        gt = (self.fitness > other.fitness or self.length < other.length
              or self.slots < other.slots)
        return ge and gt

    def as_dict(self) -> dict:
        return {"id": self.id, "fitness": _num(self.fitness), "length": self.length,
                "slots": self.slots, "hash": self.hash, "mutation": self.mutation,
                "parent": self.parent, "source": self.source,
                "evaluation": _clean(asdict(self.evaluation))}


def _rank_key(c: Candidate):
    return (-c.fitness, c.length, c.slots, c.id)


def hall_of_fame(individuals: Iterable[Individual], n: int = 20) -> list[Candidate]:
    """The ``n`` fittest complete evaluations, one per fingerprint (see module docstring)."""
    by_fp: dict[str, Candidate] = {}
    for ind in individuals:
        if not ind.evaluation.complete or not math.isfinite(ind.fitness):
            continue
        c = Candidate.of(ind)
        old = by_fp.get(c.fingerprint)
        if old is None or (c.length, c.id) < (old.length, old.id):
            by_fp[c.fingerprint] = c
    return sorted(by_fp.values(), key=_rank_key)[:n]


def by_selection(fame: Sequence[Candidate], records: Sequence[dict]) -> list[Candidate]:
    """The hall of fame in the selection suite's order: candidates scored on the
    ``selection`` stage first (fittest there first), then the rest in their order."""
    sel = {r["id"]: r["fitness"] for r in records if r["stage"] == "selection"}
    scored = sorted((c for c in fame if c.id in sel), key=lambda c: (-sel[c.id], c.id))
    return scored + [c for c in fame if c.id not in sel]


def pareto_front(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Non-dominated candidates, fittest first (see the module docstring).

    One sweep in ranking order (fitness down, then length and slots up): no
    candidate can dominate one ranked before it, so a candidate is on the front
    iff no front member found so far dominates or equals it.
    """
    front: list[Candidate] = []
    for c in sorted((c for c in candidates if math.isfinite(c.fitness)), key=_rank_key):
        if not any(f.dominates(c) or _same(f, c) for f in front):
            front.append(c)
    return front


def _same(a: Candidate, b: Candidate) -> bool:
    return (a.fitness, a.length, a.slots) == (b.fitness, b.length, b.slots)


@dataclass
class Winner:
    """A survivor of the funnel: its simplified form and what it scored where."""

    candidate: Candidate
    simplified: Program
    stage_fitness: dict[str, float]
    simplified_fitness: float
    edits: list[str]
    heldout: Evaluation | None
    formula: str
    latex: str

    @property
    def source(self) -> str:
        return str(self.simplified)

    def as_dict(self) -> dict:
        return {"candidate": self.candidate.as_dict(), "source": self.source,
                "stage_fitness": {k: _num(v) for k, v in self.stage_fitness.items()},
                "simplified_fitness": _num(self.simplified_fitness), "edits": self.edits,
                "heldout": None if self.heldout is None else _clean(asdict(self.heldout)),
                "formula": self.formula, "latex": self.latex}


@dataclass
class SearchResult:
    """Everything a search found (see :class:`optforge.search.Search`)."""

    hall_of_fame: list[Candidate]
    pareto: list[Candidate]
    winners: list[Winner]
    counters: dict
    funnel: list[dict]
    history: list[tuple[int, float]]
    baselines: dict[str, dict]
    config: dict
    seconds: float
    archive: list[dict] = field(default_factory=list)
    """MAP-Elites cells, fittest elite first: ``{"cell": [slots, sign, second moment],
    "candidate": Candidate}``."""
    islands: list[list[int]] = field(default_factory=list)
    """The final islands' member ids."""

    @property
    def best(self) -> Candidate | None:
        return self.hall_of_fame[0] if self.hall_of_fame else None

    @property
    def sources(self) -> list[str]:
        """The winners' simplified source."""
        return [w.source for w in self.winners]

    def as_dict(self) -> dict:
        return {"hall_of_fame": [c.as_dict() for c in self.hall_of_fame],
                "pareto": [c.as_dict() for c in self.pareto],
                "winners": [w.as_dict() for w in self.winners], "counters": self.counters,
                "funnel": _clean(self.funnel), "history": [[n, _num(b)] for n, b in self.history],
                "baselines": _clean(self.baselines), "config": self.config,
                "seconds": self.seconds,
                "archive": [{"cell": a["cell"], **a["candidate"].as_dict()}
                            for a in self.archive],
                "islands": self.islands}

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.as_dict(), indent=indent)

    def save(self, out: str | Path, config=None) -> list[Path]:
        """``result.json``, ``config.toml`` (``config``, a SearchConfig; default: the run's)
        and ``winner_N.py`` (simplified source, scores in a comment) in ``out``; the paths.
        In a run directory ``result.json`` is the one its store wrote at the finish
        (:meth:`~optforge.store.RunStore.finish`, there the one writer of that file)."""
        from ..store import FILE, RESULT, write_result
        from .config import SearchConfig

        out = Path(out)
        config = config if config is not None else SearchConfig.from_dict(self.config)
        out.mkdir(parents=True, exist_ok=True)
        if (out / FILE).exists():
            written = [p for p in [out / RESULT] if p.exists()]
        else:
            written = [write_result(out, self.to_json())]
        written.append(out / "config.toml")
        written[-1].write_text(config.to_toml())
        for i, w in enumerate(self.winners, 1):
            path = out / f"winner_{i}.py"
            scores = ", ".join(f"{k} {v:+.4f}" for k, v in w.stage_fitness.items())
            held = "" if w.heldout is None else f"; held-out {w.heldout.fitness:+.4f}"
            path.write_text(f"# optforge search winner {i}: fitness {scores}; simplified "
                            f"{w.simplified_fitness:+.4f}{held}\n{w.source}")
            written.append(path)
        return written

    def summary(self, sources: bool = True) -> str:
        c = self.counters
        note = rejections_note(c)
        filtered = f" ({note})" if note else ""
        lines = [f"{c['evaluated']} evaluations, {c['generated']} children generated "
                 f"({c['invalid']} invalid{filtered}, {c['structural']} structural and "
                 f"{c['behavioural']} behavioural duplicates; skip rate {c['skip_rate']:.0%}), "
                 f"{c['promotions']} promotions, {self.seconds:.1f} s"]
        if self.best is not None:
            lines.append(f"best fitness {self.best.fitness:+.4f} (length {self.best.length}, "
                         f"{self.best.slots} slots)")
        for i, w in enumerate(self.winners, 1):
            held = "" if w.heldout is None else f", held-out {w.heldout.fitness:+.4f}"
            lines.append(f"winner {i}: fitness {w.candidate.fitness:+.4f} -> simplified "
                         f"{w.simplified_fitness:+.4f}{held}")
            if sources:
                lines.append(w.source.rstrip())
        if not self.winners:
            lines.append("no candidate beat the baseline through the funnel")
        return "\n".join(lines)


def _num(x: float) -> float | str:
    """JSON-safe number: non-finite values as strings."""
    return x if isinstance(x, int | float) and math.isfinite(x) else str(x)


def _clean(obj):
    if isinstance(obj, float):
        return _num(obj)
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj
