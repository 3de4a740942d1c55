"""Four tasks on scikit-learn's 8x8 digits (1400 train / 397 validation images).

* ``digits_logreg``: multinomial logistic regression; the size knob is the
  input resolution (8x8 images upsampled bilinearly to ``res x res``), which
  adds parameters and, with them, strongly correlated features (a worse
  conditioned problem).
* ``digits_mlp``: a two-hidden-layer ReLU perceptron of width ``width``.
* ``digits_ae``: an autoencoder ``64 -> width -> code -> width -> 64`` (tanh
  hidden layers, sigmoid output), trained and validated on the mean squared
  reconstruction error per pixel.
* ``digits_noisy``: a two-hidden-layer ReLU perceptron trained on only the
  first ``N_NOISY`` (200) training images, a quarter of whose labels are
  replaced by a wrong class (``FLIPPED``), validated on the 397 clean
  validation images. Few rows and noisy labels: a large learning rate without
  weight decay memorises the wrong labels, and the final validation loss
  rewards decay and a moderate learning rate (the overfitting regime, for the
  evolution suite; the selection suite's ``synth_mlp`` and the test suite's
  ``tabular_mlp`` are other tables of that regime).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import data
from .base import DATA, Init, Spec, Task, generator, split
from .nn import accuracy, cross_entropy, dense, linear, mlp
from .supervised import Supervised

N_VAL = 397
N_NOISY = 200  # training images of digits_noisy
FLIPPED = 0.25  # the share of them given a wrong label


def _split(res: int, device, dtype):
    """Fixed train/validation split of the digits at ``res x res``, flattened."""
    x, y = data.digits()
    if res != 8:
        x = F.interpolate(x.unsqueeze(1), size=(res, res), mode="bilinear",
                          align_corners=False).squeeze(1)
    x = x.reshape(len(x), -1).to(device=device, dtype=dtype)
    y = y.to(device)
    tr, va = split(len(y), N_VAL)
    return (x[tr], y[tr]), (x[va], y[va])


class DigitsLogReg(Task):
    def __init__(self) -> None:
        super().__init__(
            name="digits_logreg",
            description="logistic regression on the 8x8 digits upsampled to res x res",
            metric="accuracy", higher_is_better=True,
            specs={
                "tiny": Spec({"res": 8}, steps=500, target=0.95, batch=64,
                             adamw={"lr": 3e-2, "wd": 0.0}),
                "small": Spec({"res": 16}, steps=1000, target=0.95, batch=64,
                              adamw={"lr": 3e-2, "wd": 0.0}),
                "medium": Spec({"res": 32}, steps=2000, target=0.95, batch=64,
                               adamw={"lr": 3e-2, "wd": 0.0}),
            },
        )

    def build(self, spec, seeds, device, dtype):
        res = spec.size["res"]
        train, val = _split(res, device, dtype)
        init = Init(seeds, device, dtype)
        w, b = dense(init, res * res, 10)

        def forward(x):
            return linear(x, w, b)

        return Supervised(init.params, forward, cross_entropy, ("accuracy", accuracy),
                          train, val, spec.batch, seeds)


def flip(y: torch.Tensor, share: float, seed: int = 0) -> torch.Tensor:
    """``y`` with ``round(share * len(y))`` labels, chosen at random, replaced by one of the
    nine other classes (uniformly): those labels are wrong."""
    g = generator(seed, DATA)
    n = round(share * len(y))
    idx = torch.randperm(len(y), generator=g)[:n]
    y = y.clone()
    y[idx] = (y[idx] + torch.randint(1, 10, (n,), generator=g)) % 10
    return y


class DigitsMLP(Task):
    def __init__(self) -> None:
        super().__init__(
            name="digits_mlp",
            description="two-hidden-layer ReLU MLP on the 8x8 digits",
            metric="accuracy", higher_is_better=True,
            specs={
                "tiny": Spec({"width": 32}, steps=500, target=0.95, batch=64,
                             adamw={"lr": 1e-2, "wd": 0.01}),
                "small": Spec({"width": 128}, steps=1000, target=0.97, batch=64,
                              adamw={"lr": 1e-2, "wd": 0.01}),
                "medium": Spec({"width": 512}, steps=2000, target=0.98, batch=64,
                               adamw={"lr": 3e-3, "wd": 0.01}),
            },
        )

    def build(self, spec, seeds, device, dtype):
        train, val = _split(8, device, dtype)
        init = Init(seeds, device, dtype)
        h = spec.size["width"]
        forward = mlp(init, [64, h, h, 10], torch.relu, 2**0.5)
        return Supervised(init.params, forward, cross_entropy, ("accuracy", accuracy),
                          train, val, spec.batch, seeds)


class DigitsNoisy(Task):
    def __init__(self) -> None:
        super().__init__(
            name="digits_noisy",
            description=f"ReLU MLP on {N_NOISY} digits, {FLIPPED:.0%} of their labels wrong",
            metric="accuracy", higher_is_better=True,
            specs={
                "tiny": Spec({"width": 64}, steps=300, target=0.78, batch=32,
                             adamw={"lr": 1e-2, "wd": 1.0}),
                "small": Spec({"width": 128}, steps=600, target=0.78, batch=32,
                              adamw={"lr": 3e-3, "wd": 1.0}),
                "medium": Spec({"width": 256}, steps=1200, target=0.75, batch=32,
                               adamw={"lr": 1e-3, "wd": 1.0}),
            },
        )

    def build(self, spec, seeds, device, dtype):
        (x, y), val = _split(8, device, dtype)
        train = x[:N_NOISY], flip(y[:N_NOISY].cpu(), FLIPPED).to(device)
        init = Init(seeds, device, dtype)
        h = spec.size["width"]
        forward = mlp(init, [64, h, h, 10], torch.relu, 2**0.5)
        return Supervised(init.params, forward, cross_entropy, ("accuracy", accuracy),
                          train, val, spec.batch, seeds)


def _mse(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error per pixel, per replica."""
    k = out.shape[0]
    return (torch.sigmoid(out) - x).square().reshape(k, -1).mean(1)


class DigitsAE(Task):
    def __init__(self) -> None:
        super().__init__(
            name="digits_ae",
            description="tanh autoencoder 64-width-code-width-64 on the 8x8 digits",
            metric="mse", higher_is_better=False,
            specs={
                "tiny": Spec({"width": 32, "code": 8}, steps=500, target=0.025, batch=64,
                             adamw={"lr": 3e-2, "wd": 0.0}),
                "small": Spec({"width": 128, "code": 16}, steps=1000, target=0.008, batch=64,
                              adamw={"lr": 3e-2, "wd": 0.0}),
                "medium": Spec({"width": 512, "code": 32}, steps=2000, target=0.004, batch=64,
                               adamw={"lr": 3e-3, "wd": 0.0}),
            },
        )

    def build(self, spec, seeds, device, dtype):
        h, c = spec.size["width"], spec.size["code"]
        (x_tr, _), (x_va, _) = _split(8, device, dtype)
        init = Init(seeds, device, dtype)
        enc1, enc2 = dense(init, 64, h), dense(init, h, c)
        dec1, dec2 = dense(init, c, h), dense(init, h, 64)

        def forward(x):
            z = linear(torch.tanh(linear(x, *enc1)), *enc2)
            return linear(torch.tanh(linear(z, *dec1)), *dec2)

        return Supervised(init.params, forward, _mse, ("mse", _mse),
                          (x_tr, x_tr), (x_va, x_va), spec.batch, seeds)
