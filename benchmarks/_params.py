"""The parameter sets the optimizer-step benchmarks time (shared by bench_step and bench_export).

``small``: 200 tensors (64x64, 64, 64x16 and 16 entries; 0.26M values);
``large``: 4 tensors, 9.97M values (1024x4096 twice, 1024x1536, 4096).
"""

from __future__ import annotations

import torch

CASES = ("small", "large")


def shapes(case: str) -> list[tuple[int, ...]]:
    if case == "small":
        cycle = [(64, 64), (64,), (64, 16), (16,)]
        return [cycle[i % len(cycle)] for i in range(200)]
    if case == "large":
        return [(1024, 4096), (1024, 4096), (1024, 1536), (4096,)]
    raise ValueError(f"unknown case {case!r}")


def make_params(case: str, device: str = "cpu", seed: int = 0) -> list[torch.Tensor]:
    """Random parameters with fixed random gradients."""
    gen = torch.Generator().manual_seed(seed)
    params = []
    for s in shapes(case):
        p = torch.randn(s, generator=gen).to(device).requires_grad_()
        p.grad = torch.randn(s, generator=gen).to(device)
        params.append(p)
    return params


def clone_params(params: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for p in params:
        q = p.detach().clone().requires_grad_()
        q.grad = p.grad.clone()
        out.append(q)
    return out
