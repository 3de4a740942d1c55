"""The benchmark's configuration: one frozen dataclass, loaded like the search's.

``BenchConfig(optimizers, tasks, trials=..., ...)`` in Python; on the command line
each field is a flag (``max_extrapolation`` <-> ``--max-extrapolation`` where the
command has one) and ``--config FILE`` a TOML file with the same names at top level
(flags override it; unknown names are errors)::

    optimizers = ["adamw", "lion", "my_rule.py"]
    tasks = ["digits_mlp", "digits_logreg"]
    trials = 8
    seeds = 3

The fields are checked on construction (ValueError naming the bad one); the
optimizers, tasks and device, which need files, the zoo and torch, are checked by
:func:`optforge.bench.run.plan_bench` before anything runs. A bench run stores
:meth:`BenchConfig.as_dict` as its config and resumes from it.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..train.amortise import mode

SAMPLERS = ("tpe", "qmc", "random")  # optforge.bench.tune
PRUNERS = ("sha", "hyperband", "none")
SCHEDULES = ("constant", "cosine", "linear")  # optforge.train.schedule (checked equal in a test)
SCALING = (0.125, 0.25, 0.5, 1.0, 2.0)
STORED_DEFAULTS = {"compile": "false"}  # settings a run stored before they existed ran with


def _names(names: str | Sequence[str]) -> tuple[str, ...]:
    """A comma-separated string or a sequence of names."""
    if isinstance(names, str):
        return tuple(n.strip() for n in names.split(",") if n.strip())
    return tuple(str(n).strip() for n in names)


@dataclass(frozen=True)
class BenchConfig:
    """What defines a benchmark (see :func:`optforge.bench.run.run_bench` for each field).

    optimizers, tasks: zoo names or program files; task names or references (a list, or
        a comma-separated string).
    trials: Optuna trials per (optimizer, task): the equal tuning budget.
    seeds: final-run seeds ``S`` (seeds ``0 .. S-1``; tuning uses another).
    tier, steps: task tier and step budget ``T`` (default: the tier's).
    evals: validation evaluations per run (after step 0).
    sampler, pruner: see :mod:`optforge.bench.tune`; ``seed`` seeds the sampler.
    batch: tuning trials trained together as replicas of one run.
    schedule, device: passed to :func:`optforge.train.train` for every run.
    baseline: the reference optimizer (added if not listed).
    scaling: budget fractions of ``T`` for the baseline's loss-vs-budget fit.
    max_extrapolation, tau_max: the speedup's clip and the performance profile's range.
    compile: the compiled optimizer step (docs/COMPILE.md): ``"auto"`` where an
        optimizer's runs on a task amortise the build (:mod:`optforge.train.amortise`),
        ``"true"``, ``"false"``; a bench run stored without it resumes with ``"false"``.
    """

    optimizers: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    trials: int = 20
    seeds: int = 5
    tier: str = "tiny"
    steps: int | None = None
    evals: int = 10
    sampler: str = "tpe"
    pruner: str = "sha"
    batch: int = 4
    schedule: str = "cosine"
    device: str = "cpu"
    baseline: str = "adamw"
    scaling: tuple[float, ...] = SCALING
    max_extrapolation: float = 2.0
    tau_max: float = 4.0
    seed: int = 0
    compile: str = "auto"

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("optimizers", "tasks"):
            value = getattr(self, name)
            if not isinstance(value, str | Sequence):
                raise ValueError(f"{name} must be a list of names, got {value!r}")
            put(name, _names(value))
        for name in ("trials", "seeds", "evals", "batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.steps is not None and (not isinstance(self.steps, int)
                                       or isinstance(self.steps, bool) or self.steps < 1):
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
        for name in ("tier", "sampler", "pruner", "schedule", "device", "baseline"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; samplers: {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise ValueError(f"unknown pruner {self.pruner!r}; pruners: {', '.join(PRUNERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; schedules: "
                             f"{', '.join(SCHEDULES)}")
        put("compile", mode(self.compile))
        put("scaling", tuple(_number("scaling", f) for f in (
            self.scaling if isinstance(self.scaling, Sequence) else [self.scaling])))
        if not self.scaling or any(not f > 0 for f in self.scaling):
            raise ValueError(f"scaling fractions must be positive, got {list(self.scaling)}")
        put("tau_max", _number("tau_max", self.tau_max))
        put("max_extrapolation", _number("max_extrapolation", self.max_extrapolation))
        if not self.tau_max > 1:
            raise ValueError(f"tau_max must exceed 1, got {self.tau_max}")
        if not self.max_extrapolation >= 1:
            raise ValueError(f"max_extrapolation must be at least 1, got "
                             f"{self.max_extrapolation}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (lists for tuples): a bench run's stored config."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def stored(cls, data: dict[str, Any]) -> BenchConfig:
        """The config of a stored bench run (one stored before ``compile`` existed trained
        eagerly, and resumes so)."""
        return cls.from_dict({**STORED_DEFAULTS, **data})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchConfig:
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown bench option(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | Path) -> BenchConfig:
        with open(path, "rb") as fh:
            try:
                data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as err:
                raise ValueError(f"{path}: {err}") from None
        return cls.from_dict(data)

    def override(self, **values: Any) -> BenchConfig:
        """A copy with some fields changed (flags given on the command line)."""
        unknown = sorted(set(values) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"unknown bench option(s) {unknown}")
        return replace(self, **values)


def _number(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or math.isnan(v):
        raise ValueError(f"{name} must be a number, got {v!r}")
    return float(v)
