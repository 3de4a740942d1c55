"""A small pre-LayerNorm transformer with stacked replica weights.

``tokens (K|1, B, T) -> logits (K, B, T, vocab)``: token plus learned
position embeddings, ``layers`` blocks of ``x + attn(ln(x))`` and
``x + mlp(ln(x))`` (GELU, hidden ``4 d``), a final LayerNorm and an
untied linear read-out. Residual-branch outputs are initialised with std
``1 / sqrt(2 layers d)`` (GPT-2's scaled init).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Init
from .nn import attention, dense, embed, layer_norm, linear


class Transformer:
    def __init__(self, init: Init, vocab: int, context: int, d: int, layers: int, heads: int,
                 causal: bool):
        if d % heads:
            raise ValueError(f"width {d} is not divisible by {heads} heads")
        self.heads, self.causal = heads, causal
        self.tok = init.normal((vocab, d), 1.0)
        self.pos = init.normal((context, d), 0.1)
        out_std = 1.0 / math.sqrt(2 * layers * d)
        self.blocks = []
        for _ in range(layers):
            self.blocks.append({
                "ln1": (init.const((d,), 1.0), init.const((d,), 0.0)),
                "qkv": init.normal((3 * d, d), 1.0 / math.sqrt(d)),
                "proj": init.normal((d, d), out_std),
                "ln2": (init.const((d,), 1.0), init.const((d,), 0.0)),
                "fc": dense(init, d, 4 * d),
                "out": (init.normal((d, 4 * d), out_std), init.const((d,), 0.0)),
            })
        self.ln_f = (init.const((d,), 1.0), init.const((d,), 0.0))
        self.head = dense(init, d, vocab)

    def __call__(self, tokens: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Logits ``(K, B, T, vocab)``; with ``last_only`` those of the last position only
        (the last block then computes nothing the read-out does not use)."""
        t = tokens.shape[-1]
        x = embed(self.tok, tokens) + self.pos[:, None, :t]
        for i, blk in enumerate(self.blocks):
            last = last_only and i == len(self.blocks) - 1
            a = attention(layer_norm(x, *blk["ln1"]), blk["qkv"], blk["proj"], self.heads,
                          self.causal, last_only=last)
            x = (x[:, :, -1:] if last else x) + a
            h = F.gelu(linear(layer_norm(x, *blk["ln2"]), *blk["fc"]))
            x = x + linear(h, *blk["out"])
        return linear(layer_norm(x, *self.ln_f), *self.head)
