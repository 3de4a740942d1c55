"""Character-level language model on English text shipped with Python.

The text is ``pydoc_data.topics`` (the standard library's documentation
topics, about 460 KB; see :func:`optforge.tasks.data.text`), read as ASCII
codes. The first 90% trains, the last 10% validates. A causal transformer
with context ``context`` predicts every next character of random windows;
validation is the mean loss on ``VAL_WINDOWS`` fixed, evenly spaced windows
of the held-out text, reported as bits per character (``loss / ln 2``).
"""

from __future__ import annotations

import math

import torch

from . import data
from .base import Init, Spec, Task
from .nn import cross_entropy
from .supervised import Supervised
from .transformer import Transformer

VAL_WINDOWS = 256


def _bpc(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return cross_entropy(logits, y) / math.log(2)


def text_split(context: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The character text's first 90% for training, and ``VAL_WINDOWS`` evenly spaced
    windows of ``context + 1`` characters from the rest for validation."""
    text = data.text().to(device)
    cut = len(text) * 9 // 10
    train, held = text[:cut], text[cut:]
    starts = torch.linspace(0, len(held) - context - 1, VAL_WINDOWS, device=device).long()
    return train, held[starts.unsqueeze(-1) + torch.arange(context + 1, device=device)]


class _Windows(Supervised):
    """Training examples are window starts; a window is ``context + 1`` characters."""

    def __init__(self, *args, context: int, **kwargs):
        self.context = context
        super().__init__(*args, **kwargs)
        self.offsets = torch.arange(context + 1, device=self.train_x.device)

    def examples(self) -> int:
        return self.train_x.shape[0] - self.context

    def fetch(self, idx):
        w = self.train_x[idx.unsqueeze(-1) + self.offsets]  # (K, B, context + 1)
        return w[..., :-1], w[..., 1:]


class CharLM(Task):
    def __init__(self) -> None:
        super().__init__(
            name="charlm",
            description="causal transformer character model of the Python docs (pydoc_data)",
            metric="bpc", higher_is_better=False,
            specs={
                "tiny": Spec({"context": 32, "width": 32, "layers": 1}, steps=1000,
                             target=2.9, batch=8, adamw={"lr": 3e-2, "wd": 0.01}),
                "small": Spec({"context": 64, "width": 64, "layers": 2}, steps=2000,
                              target=2.1, batch=16, adamw={"lr": 1e-2, "wd": 0.01}),
                "medium": Spec({"context": 128, "width": 128, "layers": 2}, steps=4000,
                               target=1.9, batch=16, adamw={"lr": 3e-3, "wd": 0.01}),
            },
        )

    def build(self, spec, seeds, device, dtype):
        t = spec.size["context"]
        train, val = text_split(t, device)
        init = Init(seeds, device, dtype)
        model = Transformer(init, vocab=data.VOCAB, context=t, d=spec.size["width"],
                            layers=spec.size["layers"], heads=4, causal=True)
        return _Windows(init.params, model, cross_entropy, ("bpc", _bpc), (train, train),
                        (val[:, :-1], val[:, 1:]), spec.batch, seeds, context=t)
