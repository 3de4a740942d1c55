"""``scaled_linreg``: least-squares linear regression whose solution spans two orders of
magnitude.

The table is :func:`.data.scaled_regression` (``features`` features, scales
log-spaced from 10 down to 0.1, neighbouring features correlated 0.5, true
weights ``w*_j = u_j / s_j`` from about 0.1 to about 10); ``max(1000, 20 features)``
rows train, 1000 validate. The model ``y = x w + b`` starts at zero and trains on
minibatches of rows (the gradient noise of sampling rows), on the squared error
relative to the target's variance ``var(y)``:

    ``loss(w, b) = mean_i (x_i w + b - y_i)^2 / var(y)``,

1 for predicting 0 (the mean), ``NOISE_SHARE = 1/11`` for the true weights (the
noise's share; the least-squares fit on the training rows scores about the same on
validation). Unlike the noisy quadratic, whose noise is synthetic and whose
Hessian is diagonal, the Hessian here is the rows' covariance (correlated features,
diagonal ``s_j^2`` spanning 1e4) and the noise is that of the rows sampled; unlike
a neural network, whose weights have a spread of about 0.1, the weights must grow
from 0 to about 10, and a rule that reads the weights' spread sees it grow from 0 to
several units during training.
"""

from __future__ import annotations

import torch

from . import data
from .base import Init, Spec, Task, split
from .nn import linear
from .supervised import Supervised

N_VAL = 1000


class ScaledLinReg(Task):
    def __init__(self) -> None:
        super().__init__(
            name="scaled_linreg",
            description="least-squares regression, feature scales and weights over 1e2",
            metric="mse", higher_is_better=False,
            specs={
                "tiny": Spec({"features": 20}, steps=300, target=0.1, batch=32,
                             adamw={"lr": 0.3, "wd": 0.0}),
                "small": Spec({"features": 100}, steps=600, target=0.1, batch=32,
                              adamw={"lr": 0.3, "wd": 0.0}),
                "medium": Spec({"features": 500}, steps=1200, target=0.1, batch=32,
                               adamw={"lr": 0.3, "wd": 0.0}),
            },
        )

    def build(self, spec, seeds, device, dtype):
        x, y, _, var = data.scaled_regression(spec.size["features"])
        x, y = x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)
        tr, va = split(len(y), N_VAL)
        init = Init(seeds, device, dtype)
        w, b = init.const((1, x.shape[1]), 0.0), init.const((1,), 0.0)

        def relative_mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            k = out.shape[0]
            return (out.squeeze(-1) - target).square().reshape(k, -1).mean(1) / var

        return Supervised(init.params, lambda v: linear(v, w, b), relative_mse,
                          ("mse", relative_mse), (x[tr], y[tr]), (x[va], y[va]), spec.batch, seeds)
