"""A 2-D convolutional network on scikit-learn's 8x8 digits (1400 train / 397 validation).

Two 3x3 convolutions of ``channels`` channels (padding 1, ReLU), a 2x2
average pool after each (``8x8 -> 4x4 -> 2x2``), then a linear classifier on
the ``channels * 4`` features. Each convolution is unfold + one batched
matmul over all replicas (:func:`optforge.tasks.nn.conv2d`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import data
from .base import Init, Spec, Task, split
from .digits import N_VAL
from .nn import accuracy, conv2d, cross_entropy, dense, linear
from .supervised import Supervised


class _CNN:
    def __init__(self, init: Init, channels: int):
        self.k = len(init.gens)
        self.convs = []
        c_in = 1
        for _ in range(2):
            self.convs.append((init.normal((channels, c_in, 3, 3), math.sqrt(2.0 / (c_in * 9))),
                               init.const((channels,), 0.0)))
            c_in = channels
        self.head = dense(init, channels * 4, 10)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x (K|1, B, 8, 8)`` -> logits ``(K, B, 10)``."""
        h = x.unsqueeze(2)  # (K|1, B, 1, 8, 8)
        for w, b in self.convs:
            h = torch.relu(conv2d(h, w, b, padding=1))
            k, batch, c, s, _ = h.shape
            h = F.avg_pool2d(h.reshape(k * batch, c, s, s), 2).view(k, batch, c, s // 2, s // 2)
        return linear(h.flatten(2), *self.head)


class DigitsCNN(Task):
    def __init__(self) -> None:
        super().__init__(
            name="digits_cnn",
            description="two-layer 2-D CNN on the 8x8 digits",
            metric="accuracy", higher_is_better=True,
            specs={
                "tiny": Spec({"channels": 8}, steps=500, target=0.9, batch=64,
                             adamw={"lr": 1e-2, "wd": 0.01}),
                "small": Spec({"channels": 16}, steps=1000, target=0.95, batch=64,
                              adamw={"lr": 1e-2, "wd": 0.01}),
                "medium": Spec({"channels": 32}, steps=2000, target=0.95, batch=64,
                               adamw={"lr": 3e-3, "wd": 0.01}),
            },
        )

    def build(self, spec, seeds, device, dtype):
        x, y = data.digits()
        x, y = x.to(device=device, dtype=dtype), y.to(device)
        tr, va = split(len(y), N_VAL)
        init = Init(seeds, device, dtype)
        model = _CNN(init, spec.size["channels"])
        return Supervised(init.params, model, cross_entropy, ("accuracy", accuracy),
                          (x[tr], y[tr]), (x[va], y[va]), spec.batch, seeds)
