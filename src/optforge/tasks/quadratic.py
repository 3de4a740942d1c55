"""An ill-conditioned noisy quadratic (the NQM of Zhang et al., 2019).

``f(w) = 1/(2n) sum_i h_i (w_i - w*_i)^2`` with ``n = dim`` curvatures ``h_i``
log-spaced from 1 down to ``1/kappa``; each step's gradient is that of
``1/(2n) sum_i h_i (w_i - w*_i - xi_i)^2`` with fresh noise
``xi_i ~ N(0, sigma^2 / h_i)`` (gradient noise covariance proportional to the
curvature, as in minibatch training). The optimum ``w*_i ~ N(0, 1 / h_i)`` is
drawn per seed: at the origin, weight decay alone would walk straight to it,
and a search would "discover" that. The initial point is
``w*_i + N(0, 1 / h_i)``, so every direction starts with the same loss and the
flat ones are far from the optimum. The validation loss (and metric) is the
noise-free ``f(w)``; it starts near 0.5.
"""

from __future__ import annotations

import math

import torch

from .base import INIT, NOISE, Init, Spec, Stream, Task, TaskInstance, generator

KAPPA = 1e4
SIGMA = 0.1
OPTIMUM = 7  # stream tag of the optimum's draw


class _Instance(TaskInstance):
    def __init__(self, dim: int, seeds: list[int], dtype, device):
        self.replicas = len(seeds)
        self.h = torch.logspace(0, -math.log10(KAPPA), dim, dtype=torch.float64)
        init = Init(seeds, device, dtype)
        w = init.normal((dim,), 1.0)
        optimum = torch.stack([torch.randn(dim, generator=generator(s, INIT, OPTIMUM),
                                           dtype=torch.float64) for s in seeds])
        scale = self.h.rsqrt()
        self.optimum = (optimum * scale).to(device=device, dtype=dtype)
        with torch.no_grad():
            w.mul_(scale.to(device=device, dtype=dtype)).add_(self.optimum)
        self.w = w
        self.params = init.params
        self.h = self.h.to(device=device, dtype=dtype)
        self.noise_scale = SIGMA / self.h.sqrt()
        window = max(1, min(64, 2**18 // dim))
        self.noise = Stream(seeds, self._draw, window, device)

    def _draw(self, seed: int, start: int, stop: int) -> torch.Tensor:
        g = generator(seed, NOISE, start)
        return torch.randn(stop - start, self.w.shape[1], generator=g).to(self.w.dtype)

    def loss(self, step: int) -> torch.Tensor:
        xi = self.noise(step) * self.noise_scale
        return 0.5 * (self.h * (self.w - self.optimum - xi).square()).mean(dim=1)

    @torch.no_grad()
    def evaluate(self) -> dict[str, torch.Tensor]:
        loss = 0.5 * (self.h * (self.w - self.optimum).square()).mean(dim=1)
        return {"loss": loss}


class NoisyQuadratic(Task):
    def __init__(self) -> None:
        super().__init__(
            name="quadratic",
            description=f"noisy quadratic, curvatures log-spaced over condition number {KAPPA:g}",
            metric="loss",
            higher_is_better=False,
            specs={
                "tiny": Spec({"dim": 100}, steps=500, target=5e-3, batch=0,
                             adamw={"lr": 1.0, "wd": 0.0}),
                "small": Spec({"dim": 1000}, steps=1000, target=5e-3, batch=0,
                              adamw={"lr": 1.0, "wd": 0.0}),
                "medium": Spec({"dim": 10000}, steps=2000, target=5e-3, batch=0,
                               adamw={"lr": 1.0, "wd": 0.0}),
            },
        )

    def build(self, spec, seeds, device, dtype):
        return _Instance(spec.size["dim"], seeds, dtype, device)
