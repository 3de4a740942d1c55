"""Behavioural fingerprint: what a program does, not how it is written.

The program is called once per probe step on fixed pseudo-random inputs (two
parameters of shapes 3 x 4 and 5, float64, hyperparameters at their defaults)
with gradients of a fixed noisy quadratic ``g = w + noise``, its slots carried
from call to call; the updates are rounded to six significant digits and
hashed. Two programs with equal fingerprints behave the same on these inputs,
which the search uses as a functional-equivalence cache (AutoML-Zero);
different fingerprints prove the programs differ.

The probe steps (:data:`PROBE_STEPS`) are the ``step`` input of the calls:
``1, 2, 3`` (early steps, where bias corrections and slot warm-up differ), then
``30, 300, 3000`` (a decade apart, up to the longest training runs), where
step schedules part that agree to six digits on three steps (a decay after
step 100; NAdam variants whose ``mu_prod`` products differ in slow factors).
The jump costs one equivalence: a counter slot ``n = n + 1`` is ``step`` only
on consecutive steps. The search stores its probe (``fingerprint_steps``);
:data:`PROBE_STEPS_V1` is the three-step probe of runs stored before it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from .ir import Program
from .runtime import Plan, run

SHAPES = ((1, 3, 4), (1, 5, 1))
LR = 0.1
PROBE_STEPS = (1, 2, 3, 30, 300, 3000)
PROBE_STEPS_V1 = (1, 2, 3)


def fingerprint(program: Program, steps: Sequence[int] = PROBE_STEPS, digits: int = 6) -> str:
    """Hash of the rounded updates of one call per value of ``step`` in ``steps``."""
    plan = Plan(program)
    gen = torch.Generator().manual_seed(20240229)

    def draw(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float64)

    ws = [draw(s) for s in SHAPES]
    slots = [[torch.zeros(_slot_shape(plan.slot_shapes[s], w), dtype=torch.float64) for w in ws]
             for s in plan.slots]
    hyper = dict(program.hyper)
    out: list[str] = []
    for step in steps:
        gs = [w + 0.5 * draw(w.shape) for w in ws]
        hs = [draw(w.shape).abs() + 0.1 for w in ws]
        inputs = {"w": ws, "g": gs, "h": hs, "lr": LR, "step": float(step)}
        update, *new = run(plan, {k: inputs[k] for k in plan.input_regs}, slots, hyper, ws[0])
        update = _per_param(update, ws, full=True)
        ws = [w - u for w, u in zip(ws, update, strict=True)]
        slots = [_per_param(v, ws, full=False) for v in new]
        # + 0.0 folds -0.0 into 0.0: the sign of a zero is not behaviour worth telling apart
        out += [f"{x + 0.0:.{digits}g}" for u in update for x in u.flatten().tolist()]
    return hashlib.blake2b(" ".join(out).encode(), digest_size=16).hexdigest()


def _slot_shape(shape, w: torch.Tensor) -> tuple[int, int, int]:
    """Concrete (K, ., .) shape of an abstract slot shape for parameter view ``w``."""
    size = {"R": w.shape[1], "C": w.shape[2], 1: 1}
    return (w.shape[0], size[shape[0]], size[shape[1]])


def _per_param(value, ws: list[torch.Tensor], full: bool) -> list[torch.Tensor]:
    """A register value as one fresh tensor per parameter (as ProgramOptimizer stores
    slots); the update broadcast to each parameter's shape when ``full``."""
    if isinstance(value, list | tuple):
        tensors = list(value)
    else:
        t = torch.as_tensor(value, dtype=torch.float64).reshape(-1, 1, 1)
        tensors = [t] * len(ws)
    if full:
        return [t.expand_as(w).clone() for t, w in zip(tensors, ws, strict=True)]
    return [t.clone() for t in tensors]
