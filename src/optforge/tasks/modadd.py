"""Modular addition with a one-layer transformer (the grokking task of Power et al., 2022).

Inputs are the sequences ``[a, b, =]`` for ``a, b in Z_p``; the model
predicts ``(a + b) mod p`` at the last position (only the last position's
query and MLP are computed). A fixed random half of the ``p^2`` pairs is the
training set, sampled in minibatches; the other half is the validation set,
so validation accuracy measures generalisation to unseen pairs, which comes
late (grokking) and needs weight decay.
"""

from __future__ import annotations

import torch

from .base import Init, Spec, Task, split
from .nn import accuracy, cross_entropy
from .supervised import Supervised
from .transformer import Transformer

FRAC_PERCENT = 50  # training fraction of the pairs, in percent


class ModAdd(Task):
    def __init__(self) -> None:
        super().__init__(
            name="modadd",
            description="1-layer transformer on (a + b) mod p, trained on half of the pairs",
            metric="accuracy", higher_is_better=True,
            specs={
                "tiny": Spec({"p": 31, "width": 32}, steps=1000, target=0.9, batch=128,
                             adamw={"lr": 2e-2, "wd": 1.0}),
                "small": Spec({"p": 59, "width": 64}, steps=2000, target=0.95, batch=256,
                              adamw={"lr": 1e-2, "wd": 1.0}),
                "medium": Spec({"p": 97, "width": 128}, steps=3000, target=0.95, batch=256,
                               adamw={"lr": 3e-3, "wd": 1.0}),
            },
        )

    def build(self, spec, seeds, device, dtype):
        p, d = spec.size["p"], spec.size["width"]
        a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
        x = torch.stack([a.flatten(), b.flatten(), torch.full((p * p,), p)], dim=1)
        y = (a.flatten() + b.flatten()) % p
        tr, va = split(p * p, p * p - p * p * FRAC_PERCENT // 100)
        x, y = x.to(device), y.to(device)
        init = Init(seeds, device, dtype)
        model = Transformer(init, vocab=p + 1, context=3, d=d, layers=1, heads=4, causal=False)

        def forward(tokens):
            return model(tokens, last_only=True)[..., -1, :]

        return Supervised(init.params, forward, cross_entropy, ("accuracy", accuracy),
                          (x[tr], y[tr]), (x[va], y[va]), spec.batch, seeds)
