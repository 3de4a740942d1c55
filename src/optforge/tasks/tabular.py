"""Two small tabular tasks on tables that ship inside scikit-learn.

* ``tabular_mlp``: a ReLU MLP ``30 -> width -> width -> 2`` classifying the
  Wisconsin breast-cancer table (569 rows, 30 standardised features; 400
  train / 169 validation). Few examples and many correlated features: the
  regime where a tuned optimizer mostly has to avoid overfitting.
* ``regression_mlp``: a tanh MLP ``10 -> width -> width -> 1`` regressing
  the diabetes table's disease progression (442 rows, 10 standardised
  features, standardised target; 342 train / 100 validation), mean squared
  error. Predicting the mean scores about 1.0.
"""

from __future__ import annotations

import torch

from . import data
from .base import Init, Spec, Task, split
from .nn import accuracy, cross_entropy, dense, linear
from .supervised import Supervised


def _mlp(init: Init, sizes: list[int], act, gain: float):
    layers = [dense(init, a, b, gain=gain) for a, b in zip(sizes[:-2], sizes[1:-1], strict=True)]
    layers.append(dense(init, sizes[-2], sizes[-1]))

    def forward(x):
        for w, b in layers[:-1]:
            x = act(linear(x, w, b))
        return linear(x, *layers[-1])

    return forward


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    k = out.shape[0]
    return (out.squeeze(-1) - y).square().reshape(k, -1).mean(1)


class TabularMLP(Task):
    def __init__(self) -> None:
        super().__init__(
            name="tabular_mlp",
            description="ReLU MLP on the breast-cancer table (scikit-learn)",
            metric="accuracy", higher_is_better=True,
            specs={
                "tiny": Spec({"width": 32}, steps=300, target=0.95, batch=32,
                             adamw={"lr": 3e-3, "wd": 0.01}),
                "small": Spec({"width": 128}, steps=600, target=0.95, batch=32,
                              adamw={"lr": 1e-3, "wd": 0.01}),
                "medium": Spec({"width": 512}, steps=1200, target=0.95, batch=32,
                               adamw={"lr": 1e-3, "wd": 0.01}),
            },
        )

    def build(self, spec, seeds, device, dtype):
        x, y = data.breast_cancer()
        x, y = x.to(device=device, dtype=dtype), y.to(device)
        tr, va = split(len(y), 169)
        h = spec.size["width"]
        init = Init(seeds, device, dtype)
        forward = _mlp(init, [30, h, h, 2], torch.relu, 2**0.5)
        return Supervised(init.params, forward, cross_entropy, ("accuracy", accuracy),
                          (x[tr], y[tr]), (x[va], y[va]), spec.batch, seeds)


class RegressionMLP(Task):
    def __init__(self) -> None:
        super().__init__(
            name="regression_mlp",
            description="tanh MLP regression on the diabetes table (scikit-learn)",
            metric="mse", higher_is_better=False,
            specs={
                "tiny": Spec({"width": 32}, steps=300, target=0.6, batch=32,
                             adamw={"lr": 3e-3, "wd": 0.01}),
                "small": Spec({"width": 128}, steps=600, target=0.6, batch=32,
                              adamw={"lr": 1e-3, "wd": 0.01}),
                "medium": Spec({"width": 512}, steps=1200, target=0.6, batch=32,
                               adamw={"lr": 1e-3, "wd": 0.01}),
            },
        )

    def build(self, spec, seeds, device, dtype):
        x, y = data.diabetes()
        x, y = x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)
        tr, va = split(len(y), 100)
        h = spec.size["width"]
        init = Init(seeds, device, dtype)
        forward = _mlp(init, [10, h, h, 1], torch.tanh, 1.0)
        return Supervised(init.params, forward, _mse, ("mse", _mse),
                          (x[tr], y[tr]), (x[va], y[va]), spec.batch, seeds)
