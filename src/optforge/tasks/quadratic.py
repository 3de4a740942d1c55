"""An ill-conditioned noisy quadratic (the NQM of Zhang et al., 2019).

``f(w) = 1/2 sum_i h_i w_i^2`` with curvatures ``h_i`` log-spaced over a
condition number ``kappa``; each step's gradient is that of
``1/2 sum_i h_i (w_i - xi_i)^2`` with fresh noise ``xi_i ~ N(0, sigma^2 / h_i)``
(gradient noise covariance proportional to the curvature, as in minibatch
training). The validation loss is the noise-free ``f(w)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import Spec, Task, TaskInstance, generator


class _Instance(TaskInstance):
    def __init__(self, dim: int, kappa: float, sigma: float, seeds: Sequence[int], dtype, device):
        self.replicas = len(seeds)
        self.h = torch.logspace(0, -torch.log10(torch.tensor(kappa)).item(), dim,
                                dtype=torch.float64).to(dtype=dtype, device=device)
        w0 = torch.stack([torch.randn(dim, generator=generator(s), dtype=torch.float64)
                          for s in seeds]) / self.h.double().sqrt().to("cpu")
        self.w = w0.to(dtype=dtype, device=device).requires_grad_()
        self.params = [self.w]
        self.sigma = sigma
        self.seeds = list(seeds)
        self.dtype, self.device = dtype, device

    def loss(self, step: int) -> torch.Tensor:
        noise = torch.stack([
            torch.randn(self.w.shape[1], generator=generator(s * 1_000_003 + step),
                        dtype=torch.float64) for s in self.seeds
        ]).to(dtype=self.dtype, device=self.device)
        xi = noise * self.sigma / self.h.sqrt()
        return 0.5 * (self.h * (self.w - xi).square()).sum(dim=1) / self.w.shape[1]

    @torch.no_grad()
    def evaluate(self) -> dict[str, torch.Tensor]:
        loss = 0.5 * (self.h * self.w.square()).sum(dim=1) / self.w.shape[1]
        return {"loss": loss}


class NoisyQuadratic(Task):
    def __init__(self) -> None:
        super().__init__(
            name="quadratic",
            description="ill-conditioned noisy quadratic (condition number 1e4)",
            metric="loss",
            higher_is_better=False,
            specs={
                "tiny": Spec({"dim": 100}, steps=200, target=1e-2),
                "small": Spec({"dim": 1000}, steps=500, target=1e-2),
                "medium": Spec({"dim": 10000}, steps=2000, target=1e-2),
            },
        )

    def instantiate(self, tier="tiny", seeds=(0,), device="cpu", dtype=torch.float32):
        spec = self.spec(tier)
        return _Instance(spec.size["dim"], 1e4, 0.1, seeds, dtype, device)
