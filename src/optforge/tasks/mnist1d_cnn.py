"""A 1-D convolutional network on MNIST-1D (4000 train / 1000 validation signals of length 40).

Three convolutions of ``channels`` channels (widths 5, 3, 3; stride 2 each;
ReLU), ``40 -> 20 -> 10 -> 5`` positions, then a linear classifier on the
flattened ``channels * 5`` features. Activations are channels-last
``(K, batch, length, channels)``; each convolution is one batched matmul over
the unfolded windows of all replicas (faster on CPU than a convolution
grouped over ``K * channels``, see docs/TASKS.md).
"""

from __future__ import annotations

import math

import torch

from . import data
from .base import Init, Spec, Task
from .nn import accuracy, conv1d, cross_entropy, dense, linear
from .supervised import Supervised

LAYERS = ((5, 2), (3, 1), (3, 1))  # (width, padding); stride 2 everywhere


class _CNN:
    def __init__(self, init: Init, channels: int):
        self.k = len(init.gens)
        self.convs = []
        c_in = 1
        for width, _ in LAYERS:
            std = math.sqrt(2.0 / (c_in * width))
            self.convs.append((init.normal((channels, c_in, width), std),
                               init.const((channels,), 0.0)))
            c_in = channels
        self.head = dense(init, channels * 5, 10)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x (K|1, B, 40)`` -> logits ``(K, B, 10)``."""
        k, b = self.k, x.shape[1]
        h = x.expand(k, b, x.shape[2]).unsqueeze(-1)  # (K, B, L, 1)
        for (w, bias), (_, pad) in zip(self.convs, LAYERS, strict=True):
            h = torch.relu(conv1d(h, w, bias, stride=2, padding=pad))
        return linear(h.reshape(k, b, -1), *self.head)  # flattened (position, channel)


class MNIST1DCNN(Task):
    def __init__(self) -> None:
        super().__init__(
            name="mnist1d_cnn",
            description="3-layer 1-D CNN on MNIST-1D (procedurally generated)",
            metric="accuracy", higher_is_better=True,
            specs={
                "tiny": Spec({"channels": 16}, steps=1000, target=0.85, batch=64,
                             adamw={"lr": 3e-2, "wd": 0.01}),
                "small": Spec({"channels": 32}, steps=2000, target=0.93, batch=64,
                              adamw={"lr": 3e-2, "wd": 0.01}),
                "medium": Spec({"channels": 64}, steps=4000, target=0.95, batch=128,
                               adamw={"lr": 3e-2, "wd": 0.01}),
            },
        )

    def build(self, spec, seeds, device, dtype):
        d = data.mnist1d()
        train = (d["x"].to(device=device, dtype=dtype), d["y"].to(device))
        val = (d["x_test"].to(device=device, dtype=dtype), d["y_test"].to(device))
        init = Init(seeds, device, dtype)
        model = _CNN(init, spec.size["channels"])
        return Supervised(init.params, model, cross_entropy, ("accuracy", accuracy),
                          train, val, spec.batch, seeds)
