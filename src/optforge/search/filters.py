"""Invariance filters: reject programs that cannot generalise, before any training.

Each filter runs the program a few steps *open loop* on the behavioural
fingerprint's inputs (:mod:`optforge.lang.fingerprint`: parameters of shapes
3 x 4 and 5, gradients ``g = w + 0.5 noise``, float64, hyperparameters at
their defaults; the parameters are not moved, so every variant of a run sees
the same ``w`` and ``g`` up to the variant's change). Let ``u(c, lr)`` be the
update of the last step when every gradient is multiplied by ``c``, and
``u(w, g)`` the same update as a function of the parameters and gradients.

``scale``
    The update direction must not depend on the gradient's scale:
    ``cos(u(c) - u(0), u(1) - u(0)) >= 1 - tolerance`` for ``c`` in 10 and 0.1
    (``u(0)`` removes what does not come from the gradient, e.g. decoupled
    weight decay ``lr wd w``, so SGD, Adam and Lion all pass; when ``u(0)`` is
    not finite, ``u(c)`` is compared with ``u(1)``). Rejects e.g.
    ``interp(m, g, 0.374 - g)``, whose mixing weight reads the gradient's raw
    size: a rule fitted to one task's gradient scale.
``state``
    No state slot may be provably constant: a slot whose new value depends on
    no input (``w g h step lr``), only on constants, hyperparameters and such
    slots, and which, with every slot it reads, is still 0 after a step, is 0
    forever (e.g. ``s = s * 0.9``: a zero standing in for weight decay).
``cancel``
    Every hyperparameter must survive in the program's math: it must be a free
    symbol of the update's or a new slot's sympy expression
    (:func:`optforge.lang.symbolic.to_sympy`, sympy's automatic
    canonicalisation, no costly ``simplify``). Rejects e.g. ``beta1 - beta1``
    or ``x * wd / wd``.
``lr``
    ``lr`` is the step size and nothing else: no slot may depend on it (a
    moving average of ``lr`` is a hidden warm-up fitted to the step budget) and
    the update must be homogeneous of degree 1 in it,
    ``u(1, 10 lr) = 10 u(1, lr)`` and ``u(1, lr / 10) = u(1, lr) / 10``
    (relative tolerance 1e-9). Leave ``lr`` out of the filters to allow
    other uses (the explicit opt-in).
``weight``
    The gradient-driven part of the update must not change direction when the
    parameters are rescaled: with ``d(c) = u(c w, g) - u(c w, 0)``,
    ``cos(d(c), d(1)) >= 1 - tolerance`` for ``c`` in 10 and 0.1, per parameter
    tensor (the gradients stay as they are). Subtracting ``u(c w, 0)`` takes
    out decoupled weight decay ``lr wd w`` (AdamW, Lion); where it is not
    finite for some ``c`` (``m / sqrt(v)`` without ``eps`` at ``g = 0``), then
    for every ``c``, ``d(c) = u(c w, g) - u(c w, -g)``, twice the part odd in
    ``g``, takes it out instead (the
    raw ``u(c w, g)``, as ``scale`` falls back to, would reject AdamW without
    ``eps`` at ``wd = 0.1``). The cosine ignores magnitude, and taking it per
    tensor ignores how tensors' steps compare, so layer-wise trust ratios
    ``||w|| / ||r||`` (LAMB, LARS, vectors unscaled) and Adafactor's relative
    step ``rms(w)`` pass. Rejects
    e.g. a momentum coefficient ``mu std(w)`` or a mixing weight read from
    ``norm(w)``: a rule fitted to one task's weight scale (the transfer
    experiment's NAdam, 8.8x worse than AdamW on a quadratic with weights of
    scale 1 to 100). Coupled L2, ``g + wd w`` fed to an adaptive rule (Adam,
    AdaBound, AMSGrad, NAdam, ...), is rejected at ``wd = 0.1`` (by ``scale``
    first) though not at 0.01 (within the tolerance): how much the decay
    weighs against the gradient there does depend on the weights' scale; the
    zoo's coupled rules default to ``wd = 0`` and pass.

:func:`reject` returns the first failed filter's reason, ``NAME: why``
(:func:`rejecting_filter` reads the name back), or ``None`` for a program
that passes them all. A program that cannot run on these inputs is left to
the search's other checks (``None``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import cache

import torch

from ..lang.fingerprint import LR, SHAPES, _per_param, _slot_shape
from ..lang.ir import INPUTS, Program, names_read
from ..lang.runtime import Plan, run

FILTERS = ("scale", "state", "cancel", "lr", "weight")
FILTERS_V1 = ("scale", "state", "cancel", "lr")  # the default of runs stored before 'weight'
STEPS = 3
SIZES = [math.prod(s) for s in SHAPES]  # each parameter's share of a flat update
Trajectory = tuple[list[torch.Tensor], list[list[torch.Tensor]]]  # updates, slot values


def _inputs(steps: int) -> tuple[list[torch.Tensor], list[list[torch.Tensor]],
                                 list[list[torch.Tensor]]]:
    gen = torch.Generator().manual_seed(20240229)

    def draw(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float64)

    ws = [draw(s) for s in SHAPES]
    gs, hs = [], []
    for _ in range(steps):
        gs.append([w + 0.5 * draw(w.shape) for w in ws])
        hs.append([draw(w.shape).abs() + 0.1 for w in ws])
    return ws, gs, hs


_INPUTS = _inputs(STEPS)


def trajectory(program: Program, scale: float = 1.0, lr: float = LR,
               hyper: dict[str, float] | None = None, steps: int = STEPS,
               plan: Plan | None = None, weight: float = 1.0) -> Trajectory:
    """Open-loop updates (one flat tensor per step) and slot values after each step;
    gradients multiplied by ``scale``, parameters by ``weight``."""
    plan = plan or Plan(program)
    ws, gs, hs = _INPUTS if steps == STEPS else _inputs(steps)
    ws = ws if weight == 1.0 else [w * weight for w in ws]
    slots = [[torch.zeros(_slot_shape(plan.slot_shapes[s], w), dtype=torch.float64) for w in ws]
             for s in plan.slots]
    values = {**dict(program.hyper), **(hyper or {})}
    updates, states = [], []
    for step in range(steps):
        inputs = {"w": ws, "g": [g * scale for g in gs[step]], "h": hs[step], "lr": lr,
                  "step": float(step + 1)}
        update, *new = run(plan, {k: inputs[k] for k in plan.input_regs}, slots, values, ws[0])
        updates.append(torch.cat([u.flatten() for u in _per_param(update, ws, full=True)]))
        slots = [_per_param(v, ws, full=False) for v in new]
        states.append([torch.cat([x.flatten() for x in s]) for s in slots])
    return updates, states


def dependencies(program: Program) -> dict[str, set[str]]:
    """For each slot, what its new value reads: inputs, hyperparameters and slots' old
    values (through temporaries and overwrites)."""
    leaves = set(INPUTS) | set(program.hyperparameters) | set(program.slots)
    env: dict[str, set[str]] = {}

    def deps(names: set[str]) -> set[str]:
        out: set[str] = set()
        for n in names:
            out |= env.get(n, {n} & leaves)
        return out

    for a in program.body:
        env[a.target] = deps(names_read(a.expr))
    return {s: deps(names_read(e)) for s, e in zip(program.slots, program.returns[1:],
                                                   strict=True)}


def _closure(program: Program) -> dict[str, set[str]]:
    """Slot dependencies closed over other slots (what a slot depends on over many steps)."""
    deps = dependencies(program)
    changed = True
    while changed:
        changed = False
        for d in deps.values():
            more = set().union(*(deps[x] for x in d if x in deps)) - d
            if more:
                d |= more
                changed = True
    return deps


def _finite(ts: Sequence[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in ts)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = float(a.norm()), float(b.norm())
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(a @ b) / (na * nb)


def _scale(ref: Callable[[], Trajectory], last: Callable[..., torch.Tensor],
           tolerance: float) -> str | None:
    u1 = ref()[0][-1]
    u0 = last(0.0, 1.0)
    base = u0 if _finite([u0]) else torch.zeros_like(u1)
    if not _finite([u1]):
        return None
    for c in (10.0, 0.1):
        uc = last(c, 1.0)
        if not _finite([uc]) or _cos(uc - base, u1 - base) < 1 - tolerance:
            return f"the update direction changes when gradients are scaled by {c:g}"
    return None


def _weight(ref: Callable[[], Trajectory], last: Callable[..., torch.Tensor],
            tolerance: float) -> str | None:
    scales = (1.0, 10.0, 0.1)
    # one reading for every c: u(c w, g) - u(c w, 0), or, where any u(c w, 0) is not finite,
    # u(c w, g) - u(c w, -g)
    odd = not _finite([last(0.0, c) for c in scales])

    def driven(c: float) -> torch.Tensor:
        uc = ref()[0][-1] if c == 1.0 else last(1.0, c)
        return uc - (last(-1.0, c) if odd else last(0.0, c))

    d1 = driven(1.0)
    if not _finite([d1]):
        return None
    for c in (10.0, 0.1):
        dc = driven(c)
        if not _finite([dc]) or min(_cos(a, b) for a, b in zip(dc.split(SIZES), d1.split(SIZES),
                                                             strict=True)) < 1 - tolerance:
            return f"the update direction changes when parameters are scaled by {c:g}"
    return None


def _state(program: Program, ref: Callable[[], Trajectory]) -> str | None:
    closure = _closure(program)
    free = [s for s, d in closure.items() if not d & set(INPUTS)]
    if not free:
        return None
    _, states = ref()  # states[0]: after the first step
    index = {s: i for i, s in enumerate(program.slots)}
    zero = {s for s in free if bool((states[0][index[s]] == 0).all())}
    for s in free:
        # s and every slot it reads (all input-free) start at 0 and are 0 after a step: a
        # deterministic map at its fixed point, so s is 0 forever
        if {s} | (closure[s] & set(closure)) <= zero:
            return f"slot {s!r} is provably constant (reads no input, stays 0)"
    return None


def _cancel(program: Program) -> str | None:
    from ..lang.symbolic import hyper_symbol, to_sympy

    used = set().union(*(e.free_symbols for e in to_sympy(program, simplified=False).values()))
    for k, _ in program.hyper:
        if hyper_symbol(k) not in used:
            return f"hyperparameter {k!r} cancels out of every output"
    return None


def _lr(program: Program, plan: Plan, ref: Callable[[], Trajectory]) -> str | None:
    for s, d in _closure(program).items():
        if "lr" in d:
            return f"slot {s!r} depends on lr (lr must only scale the step)"
    updates, _ = ref()
    if not _finite(updates):
        return None
    for c in (10.0, 0.1):
        alt, _ = trajectory(program, lr=LR * c, plan=plan)
        if not all(torch.allclose(a, b * c, rtol=1e-9, atol=1e-300)
                   for a, b in zip(alt, updates, strict=True)):
            return f"the update is not proportional to lr (lr x {c:g})"
    return None


def reject(program: Program, filters: Sequence[str] = FILTERS,
           tolerance: float = 0.01) -> str | None:
    """The first failed filter's reason, or None (see the module docstring)."""
    unknown = set(filters) - set(FILTERS)
    if unknown:
        raise ValueError(f"unknown filter(s) {sorted(unknown)}; known: {list(FILTERS)}")
    try:
        plan = Plan(program)
    except Exception:  # noqa: BLE001 - a program that cannot compile is judged elsewhere
        return None

    @cache
    def ref() -> Trajectory:  # the reference run (gradient scale 1, lr LR), shared
        return trajectory(program, plan=plan)

    @cache
    def last(scale: float, weight: float) -> torch.Tensor:  # u(weight w, scale g), shared
        return trajectory(program, scale, plan=plan, weight=weight)[0][-1]

    checks = {"scale": lambda: _scale(ref, last, tolerance),
              "weight": lambda: _weight(ref, last, tolerance),
              "state": lambda: _state(program, ref),
              "cancel": lambda: _cancel(program), "lr": lambda: _lr(program, plan, ref)}
    for name in ("state", "lr", "scale", "weight", "cancel"):  # cheapest first
        if name in filters:
            try:
                reason = checks[name]()
            except Exception:  # noqa: BLE001 - a program that cannot run is judged elsewhere
                return None
            if reason is not None:
                return f"{name}: {reason}"
    return None


def rejecting_filter(reason: str | None) -> str | None:
    """The filter named in a reason from :func:`reject` (``NAME: why``), or None."""
    return None if reason is None else reason.partition(":")[0]


def rejections(filtered_by: dict[str, int]) -> list[tuple[str, int]]:
    """The search's rejections per filter (its ``filtered_by`` counter) in :data:`FILTERS`
    order, zeros left out."""
    order = [*FILTERS, *sorted(set(filtered_by) - set(FILTERS))]
    return [(f, filtered_by[f]) for f in order if filtered_by.get(f)]


def rejections_text(filtered_by: dict[str, int]) -> str:
    """:func:`rejections` as text: ``scale 6, state 2, cancel 46, lr 23`` ('' for none)."""
    return ", ".join(f"{f} {n}" for f, n in rejections(filtered_by))


def rejections_note(counters: Mapping[str, object]) -> str:
    """A run's stored counters as ``77 by the invariance filters: cancel 46, lr 23, ...``
    ('' for none, or for a run stored before the per-filter counts)."""
    split = rejections_text(counters.get("filtered_by", {}))
    return f"{counters['filtered']} by the invariance filters: {split}" if split else ""


__all__ = ["FILTERS", "FILTERS_V1", "dependencies", "reject", "rejecting_filter", "rejections",
           "rejections_note", "rejections_text", "trajectory"]
