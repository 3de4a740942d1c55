"""Character-level GRU language model of the standard library's English documentation.

The same text, split and validation windows as ``charlm``
(:mod:`optforge.tasks.charlm`), a different architecture: an embedding of
width ``width``, one GRU layer of ``width`` units (:func:`optforge.tasks.nn.gru`,
torch's equations) and a linear read-out predicting every next character of a
window of ``context`` characters. Validation: bits per character.
"""

from __future__ import annotations

import torch

from . import data
from .base import Init, Spec, Task
from .charlm import _bpc, _Windows, text_split
from .nn import cross_entropy, dense, embed, gru, linear


class _GRULM:
    def __init__(self, init: Init, d: int):
        self.table = init.normal((data.VOCAB, d), 1.0)
        bound = d ** -0.5
        self.w_ih = init.uniform((3 * d, d), bound)
        self.w_hh = init.uniform((3 * d, d), bound)
        self.b_ih = init.uniform((3 * d,), bound)
        self.b_hh = init.uniform((3 * d,), bound)
        self.head = dense(init, d, data.VOCAB)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens (K|1, B, T)`` -> logits ``(K, B, T, VOCAB)``."""
        h = gru(embed(self.table, tokens), self.w_ih, self.w_hh, self.b_ih, self.b_hh)
        return linear(h, *self.head)


class CharGRU(Task):
    def __init__(self) -> None:
        super().__init__(
            name="chargru",
            description="GRU character model of the Python docs (pydoc_data)",
            metric="bpc", higher_is_better=False,
            specs={
                "tiny": Spec({"context": 16, "width": 48}, steps=400, target=3.0, batch=16,
                             adamw={"lr": 1e-2, "wd": 0.01}),
                "small": Spec({"context": 64, "width": 128}, steps=1000, target=2.8, batch=16,
                              adamw={"lr": 1e-2, "wd": 0.01}),
                "medium": Spec({"context": 128, "width": 256}, steps=2000, target=2.4,
                               batch=16, adamw={"lr": 3e-3, "wd": 0.01}),
            },
        )

    def build(self, spec, seeds, device, dtype):
        t = spec.size["context"]
        train, val = text_split(t, device)
        init = Init(seeds, device, dtype)
        model = _GRULM(init, spec.size["width"])
        return _Windows(init.params, model, cross_entropy, ("bpc", _bpc), (train, train),
                        (val[:, :-1], val[:, 1:]), spec.batch, seeds, context=t)
