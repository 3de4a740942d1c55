"""Behavioural fingerprint: what a program does, not how it is written.

The program runs a few steps on fixed pseudo-random inputs (two parameters of
shapes 3 x 4 and 5, float64, hyperparameters at their defaults) with gradients
of a fixed noisy quadratic ``g = w + noise``; the updates are rounded to six
significant digits and hashed. Two programs with equal fingerprints behave the
same on these inputs, which the search uses as a functional-equivalence cache
(AutoML-Zero); different fingerprints prove the programs differ.
"""

from __future__ import annotations

import hashlib

import torch

from .ir import Program
from .runtime import Plan, run

SHAPES = ((1, 3, 4), (1, 5, 1))
LR = 0.1


def fingerprint(program: Program, steps: int = 3, digits: int = 6) -> str:
    plan = Plan(program)
    gen = torch.Generator().manual_seed(20240229)

    def draw(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float64)

    ws = [draw(s) for s in SHAPES]
    size = {"R": None, "C": None, 1: 1}
    slots = []
    for s in plan.slots:
        dr, dc = plan.slot_shapes[s]
        slots.append([torch.zeros((1, size[dr] or shp[1], size[dc] or shp[2]), dtype=torch.float64)
                      for shp in SHAPES])
    hyper = dict(program.hyper)
    out: list[str] = []
    for step in range(1, steps + 1):
        gs = [w + 0.5 * draw(w.shape) for w in ws]
        hs = [draw(w.shape).abs() + 0.1 for w in ws]
        inputs = {"w": ws, "g": gs, "h": hs, "lr": LR, "step": float(step)}
        update, *slots = run(plan, {k: inputs[k] for k in plan.input_regs}, slots, hyper, ws[0])
        if not isinstance(update, list):
            update = [torch.as_tensor(update, dtype=torch.float64).expand_as(w) for w in ws]
        ws = [w - u.expand_as(w) for w, u in zip(ws, update, strict=True)]
        slots = [list(v) if isinstance(v, list) else [v] * len(ws) for v in slots]
        out += [f"{x:.{digits}g}" for u in update for x in u.flatten().tolist()]
    return hashlib.blake2b(" ".join(out).encode(), digest_size=16).hexdigest()
