"""The search configuration: one flat dataclass, loaded from TOML.

Every field is a scalar or a list of scalars, documented in its ``help``
metadata, so that each maps one-to-one onto a command-line flag
(``max_length`` <-> ``--max-length``; :func:`flags` lists them). A TOML file
holds the same names at top level; unknown names are errors::

    seed = 1
    init = ["adamw", "lion", "my_rule.py"]
    evaluations = 500
    tiers = ["tiny:quadratic,digits_mlp", "small:digits_mlp", "medium:digits_mlp"]
    heldout = "tiny:digits_ae,mnist1d_cnn"

Stages are written ``SIZE:TASK[,TASK...][@STEPS]`` (see
:class:`optforge.search.fitness.Stage`).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from ..lang import ops
from ..lang.fingerprint import PROBE_STEPS
from ..lang.ir import INPUTS
from .fitness import Stage


def _grid(exponents: range) -> list[float]:
    """``10^(e/3)``: learning rates a third of a decade apart."""
    return [float(f"{10 ** (e / 3):.3g}") for e in exponents]


LR_GRID = _grid(range(-12, 3, 2))  # 1e-4 .. 4.64, eight points
BASELINE_LR_GRID = _grid(range(-12, 4))  # 1e-4 .. 10, sixteen points (a superset)


def _f(default, help: str, **kw):  # noqa: A002 - 'help' reads best in the table below
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: list(d) if isinstance(d, list) else dict(d),
                     metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class SearchConfig:
    """All knobs of a search; defaults are the documented ones (docs/SEARCH.md)."""

    # ---- run
    seed: int = _f(0, "seed of the search (mutations, tournaments)")
    task_seed: int = _f(0, "first task seed (initialisation and data)")
    seeds_per_task: int = _f(2, "task seeds per evaluation (task_seed, task_seed + 1, ...), "
                                "trained as replicas; a rate's loss is their geometric mean")
    init: list[str] = _f(["adamw"], "warm-start programs: zoo names or program files (*.py)")
    evaluations: int = _f(200, "fitness evaluations (training runs) spent by evolution")
    time_limit: float = _f(0.0, "seconds for the whole run: evolution, funnel, simplification "
                                "and held-out stop when they are spent (0: no limit)")
    max_generated: int = _f(0, "stop after generating this many children (0: 50 x evaluations "
                               "+ 1000)")
    device: str = _f("cpu", "torch device for training")
    dtype: str = _f("float32", "torch dtype for training (float32 or float64)")
    compile: str = _f("auto", "compiled optimizer step (docs/COMPILE.md): 'auto' (stages whose "
                              "training steps per evaluation amortise the C build), 'true' "
                              "or 'false'")
    # ---- evolution
    population: int = _f(32, "population size P")
    tournament: int = _f(8, "tournament size T (parents are the fittest of T sampled)")
    restart_after: int = _f(0, "restart after this many evaluations without a new best (0: never)")
    restart_from: str = _f("best", "restart from the 'initial' programs or the 'best' so far")
    islands: int = _f(1, "independent populations of `population` each (1: one population)")
    migrate_every: int = _f(0, "evaluations between migrations: each island's best joins the "
                               "next island (0: never)")
    reset_every: int = _f(0, "evaluations between resets of the weakest island to the best "
                             "island's best (0: never; needs islands > 1)")
    archive_parent: float = _f(0.0, "probability that a parent is drawn from the MAP-Elites "
                                    "archive instead of a tournament")
    fingerprint_steps: list[int] = _f(list(PROBE_STEPS), "values of the step input at which the "
                                      "behavioural cache's fingerprint calls a program, slots "
                                      "carried (docs/SEARCH.md; runs stored before: 1, 2, 3)")
    # ---- invariance filters (before any training)
    filters: list[str] = _f(["scale", "state", "cancel", "lr", "weight"],
                            "invariance filters a child must pass before training (empty: "
                            "none; leave out 'lr' to let lr be read other than as step size; "
                            "runs stored before 'weight' keep their list)")
    filter_tolerance: float = _f(0.01, "the scale and weight filters' tolerance on 1 - cosine")
    # ---- mutation
    weight_insert: float = _f(1.0, "weight of the insert-statement mutation")
    weight_delete: float = _f(1.0, "weight of the delete-statement mutation")
    weight_argument: float = _f(1.0, "weight of the change-argument mutation")
    weight_constant: float = _f(1.0, "weight of the perturb-constant mutation (x 2^N(0,1))")
    max_length: int = _f(40, "maximum program length in op calls")
    max_slots: int = _f(4, "maximum number of state slots")
    new_slot: float = _f(0.1, "probability that an insertion creates a new state slot")
    ema_slot: float = _f(0.5, "probability that a new slot is a moving average interp(s, x, c)")
    new_constant: float = _f(0.2, "probability that a new argument is a new constant")
    overwrite: float = _f(0.3, "probability that an insertion overwrites an existing variable")
    ops: list[str] = _f([], "op vocabulary of insertions (empty: every registry op)")
    exclude_ops: list[str] = _f([], "ops removed from the vocabulary")
    max_tries: int = _f(100, "mutation draws per child before giving up")
    require_inputs: list[str] = _f(["lr"], "inputs every candidate's update must depend on")
    # ---- fitness
    tiers: list[str] = _f(["tiny:quadratic,digits_mlp", "small:digits_mlp", "medium:digits_mlp"],
                          "funnel tiers, cheapest first: SIZE:TASK,...[@STEPS] (the evolution "
                          "suite; TASK: a name, or your own as path/to/file.py:NAME or "
                          "module:NAME)")
    selection: str = _f("", "selection suite: promotion's last stage and the hall of fame's "
                            "order, SIZE:TASK,...[@STEPS] ('': none)")
    heldout: str = _f("tiny:digits_ae,mnist1d_cnn",
                      "test suite for the final report, SIZE:TASK,... ('': none)")
    lr_grid: list[float] = _f(LR_GRID, "candidate learning rates (K replicas of one run)")
    baseline: str = _f("adamw", "baseline program (zoo name or file), tuned on baseline_lr_grid")
    baseline_lr_grid: list[float] = _f([], "baseline learning rates (empty: lr_grid, the "
                                           "candidates' own grid)")
    lr_grid_relative: bool = _f(False, "lr_grid and baseline_lr_grid are multipliers of each "
                                       "task's AdamW recipe rate at the stage's tier (runs "
                                       "stored before: false, absolute rates)")
    aggregate: str = _f("min", "how task scores combine: 'min' (the worst task) or 'mean'")
    divergence: float = _f(1e3, "loss growth factor that counts as divergence")
    # ---- hurdles
    hurdle_checkpoints: list[float] = _f([0.25, 0.5], "hurdle checkpoints, fractions of training")
    hurdle_percentile: float = _f(25.0, "stop candidates below this percentile (0: no hurdles)")
    hurdle_warmup: int = _f(8, "scores needed at a checkpoint before its hurdle applies")
    # ---- funnel
    promote_threshold: float = _f(0.0, "fitness a candidate must exceed to be promoted")
    promote_max: int = _f(8, "candidates promoted per tier at most")
    # ---- simplification and results
    simplify_top: int = _f(3, "survivors to simplify and report as winners")
    simplify_tolerance: float = _f(0.02, "fitness a simplification may lose")
    simplify_nodes: bool = _f(True, "also try replacing calls by one of their arguments")
    simplify_evaluations: int = _f(100, "fitness evaluations per simplification at most")
    hall_of_fame: int = _f(20, "size of the hall of fame")

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        positive = ("evaluations", "population", "tournament", "max_length", "max_tries",
                    "hurdle_warmup", "promote_max", "hall_of_fame")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        nonneg = ("time_limit", "max_generated", "restart_after", "max_slots", "simplify_top",
                  "simplify_tolerance", "simplify_evaluations")
        for name in nonneg:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.tournament > self.population:
            raise ValueError(f"tournament ({self.tournament}) exceeds population "
                             f"({self.population})")
        for name in ("new_slot", "ema_slot", "new_constant", "overwrite"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        weights = self.mutation_weights
        if any(w < 0 or not math.isfinite(w) for w in weights.values()) or not any(
                weights.values()):
            raise ValueError(f"mutation weights must be >= 0 with one positive, got {weights}")
        for name in ("ops", "exclude_ops"):
            bad = [o for o in getattr(self, name) if o not in ops.REGISTRY]
            if bad:
                raise ValueError(f"{name}: unknown op(s) {bad}")
        bad = [x for x in self.require_inputs if x not in INPUTS]
        if bad:
            raise ValueError(f"require_inputs: {bad} are not program inputs {list(INPUTS)}")
        if not self.op_vocabulary:
            raise ValueError("the op vocabulary is empty after exclude_ops")
        if self.restart_from not in ("best", "initial"):
            raise ValueError(f"restart_from must be 'best' or 'initial', got {self.restart_from!r}")
        if self.aggregate not in ("mean", "min"):
            raise ValueError(f"aggregate must be 'mean' or 'min', got {self.aggregate!r}")
        from ..train.amortise import MODES

        if self.compile not in MODES:
            raise ValueError(f"compile must be 'auto', 'true' or 'false', got {self.compile!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not self.init:
            raise ValueError("init needs at least one program")
        if not self.tiers:
            raise ValueError("tiers needs at least one stage")
        if not 0 <= self.hurdle_percentile <= 100:
            raise ValueError(f"hurdle_percentile must be in [0, 100], got {self.hurdle_percentile}")
        if any(not 0 < f < 1 for f in self.hurdle_checkpoints):
            raise ValueError(f"hurdle_checkpoints must be in (0, 1), got {self.hurdle_checkpoints}")
        for name in ("lr_grid", "baseline_lr_grid"):
            grid = getattr(self, name)
            if (not grid and name == "lr_grid") or any(not (x > 0 and math.isfinite(x))
                                                       for x in grid):
                raise ValueError(f"{name} must be positive (learning rates, or multipliers "
                                 f"with lr_grid_relative), got {grid}")
        if self.seeds_per_task < 1:
            raise ValueError(f"seeds_per_task must be >= 1, got {self.seeds_per_task}")
        if self.islands < 1 or self.migrate_every < 0 or self.reset_every < 0:
            raise ValueError("islands must be >= 1, migrate_every and reset_every >= 0")
        if not 0 <= self.archive_parent <= 1:
            raise ValueError(f"archive_parent must be a probability, got {self.archive_parent}")
        if not self.fingerprint_steps or min(self.fingerprint_steps) < 1:
            raise ValueError(f"fingerprint_steps must be steps >= 1, got {self.fingerprint_steps}")
        from .filters import FILTERS

        bad = [f for f in self.filters if f not in FILTERS]
        if bad:
            raise ValueError(f"filters: unknown {bad}; known: {list(FILTERS)}")
        if not self.divergence > 1:
            raise ValueError(f"divergence must be > 1, got {self.divergence}")
        suites = self.suites()  # parses every stage spec
        for a, b in (("evolution", "selection"), ("evolution", "test"), ("selection", "test")):
            overlap = sorted(suites[a] & suites[b])
            if overlap:
                raise ValueError(f"tasks {overlap} are in both the {a} and the {b} suite; the "
                                 "suites must be disjoint (tiers, selection, heldout)")

    def check_tasks(self) -> None:
        """Raise KeyError if a stage names an unknown task or a tier it lacks, ValueError
        for a device torch cannot train on here."""
        from .. import tasks
        from ..train.device import check_device

        check_device(self.device)

        for stage in self.stages().values():
            for t in stage.tasks:
                tasks.get(t).spec(stage.size)

    def check_programs(self) -> None:
        """Raise ValueError (a missing or malformed file) or KeyError (an unknown zoo name)
        for the warm-start programs and the baseline."""
        from .evolution import load_programs

        load_programs([*self.init, self.baseline])

    # ------------------------------------------------------------ views
    @property
    def mutation_weights(self) -> dict[str, float]:
        return {"insert": self.weight_insert, "delete": self.weight_delete,
                "argument": self.weight_argument, "constant": self.weight_constant}

    @property
    def op_vocabulary(self) -> tuple[str, ...]:
        base = self.ops or list(ops.REGISTRY)
        return tuple(o for o in base if o not in set(self.exclude_ops))

    @property
    def task_seeds(self) -> list[int]:
        return [self.task_seed + i for i in range(self.seeds_per_task)]

    @property
    def baseline_grid(self) -> list[float]:
        """The baseline's learning rates: ``baseline_lr_grid``, or else ``lr_grid``."""
        return list(self.baseline_lr_grid or self.lr_grid)

    def suites(self) -> dict[str, set[str]]:
        """Task names of the three suites: ``evolution`` (the tiers), ``selection``, ``test``
        (the held-out stage)."""
        stages = self.stages()
        return {"evolution": {t for n, s in stages.items() if n.startswith("tier")
                              for t in s.tasks},
                "selection": set(stages["selection"].tasks) if "selection" in stages else set(),
                "test": set(stages["heldout"].tasks) if "heldout" in stages else set()}

    def stages(self) -> dict[str, Stage]:
        """``tier0``, ``tier1``, ..., ``selection`` and ``heldout`` (if configured)."""
        out = {f"tier{i}": Stage.parse(f"tier{i}", s) for i, s in enumerate(self.tiers)}
        if self.selection.strip():
            out["selection"] = Stage.parse("selection", self.selection)
        if self.heldout.strip():
            out["heldout"] = Stage.parse("heldout", self.heldout)
        return out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ------------------------------------------------------------ loading
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown search option(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: _coerce(k, v) for k, v in data.items()})

    @classmethod
    def from_toml(cls, path: str | Path) -> SearchConfig:
        with open(path, "rb") as fh:
            try:
                data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as err:
                raise ValueError(f"{path}: {err}") from None
        return cls.from_dict(data)

    def override(self, **values: Any) -> SearchConfig:
        """A copy with some fields changed (flags given on the command line)."""
        unknown = sorted(set(values) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"unknown search option(s) {unknown}")
        return replace(self, **{k: _coerce(k, v) for k, v in values.items()})

    def to_toml(self) -> str:
        """This configuration as TOML text (every field)."""
        lines = []
        for f in fields(self):
            lines.append(f"# {f.metadata['help']}")
            lines.append(f"{f.name} = {_toml_value(getattr(self, f.name))}")
        return "\n".join(lines) + "\n"


_HINTS: dict[str, Any] = {}


def _types() -> dict[str, Any]:
    if not _HINTS:
        _HINTS.update(get_type_hints(SearchConfig))
    return _HINTS


def _coerce(name: str, value: Any) -> Any:
    """Check a value against the field's type (ints are accepted where floats are)."""
    hint = _types()[name]
    if name == "compile" and isinstance(value, bool):  # TOML's compile = true / false
        value = "true" if value else "false"
    ok_scalar = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}
    origin = getattr(hint, "__origin__", None)
    if origin is list:
        (item,) = hint.__args__
        if not isinstance(value, list | tuple) or any(
                isinstance(v, bool) and item is not bool or not isinstance(v, ok_scalar[item])
                for v in value):
            raise ValueError(f"{name} must be a list of {item.__name__}, got {value!r}")
        return [item(v) for v in value]
    if isinstance(value, bool) and hint is not bool or not isinstance(value, ok_scalar[hint]):
        raise ValueError(f"{name} must be {hint.__name__}, got {value!r}")
    return hint(value)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def flags() -> list[tuple[str, str, str, Any]]:
    """``(flag, field, help, default)`` for every field, e.g. ``("--max-length", ...)``."""
    out = []
    for f in fields(SearchConfig):
        default = f.default if f.default is not MISSING else f.default_factory()
        out.append((f"--{f.name.replace('_', '-')}", f.name, f.metadata["help"], default))
    return out
