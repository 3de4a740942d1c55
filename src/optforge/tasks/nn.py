"""Functional layers batched over a leading replica axis ``K``.

Every weight carries the replica axis first (``(K, out, in)`` for a linear
map, torch's ``(out, in)`` layout per replica). Activations are
``(K, batch, ..., features)``; an input with leading axis 1 (validation data
shared by all replicas) broadcasts. Nothing loops over replicas: linear maps
are batched matmuls, convolutions are unfolded into batched matmuls,
attention is batched over ``(K, batch, heads)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Init


def dense(init: Init, n_in: int, n_out: int, gain: float = 1.0) -> tuple[torch.Tensor, ...]:
    """Weights ``(K, n_out, n_in)``, std ``gain / sqrt(n_in)``; zero biases ``(K, n_out)``."""
    return init.normal((n_out, n_in), gain / math.sqrt(n_in)), init.const((n_out,), 0.0)


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ w^T + b`` per replica: ``x (K|1, ..., in)``, ``w (K, out, in)``, ``b (K, out)``."""
    k, n_out, n_in = w.shape
    lead = x.shape[1:-1]
    x3 = x.reshape(x.shape[0], -1, n_in)
    if x3.shape[0] == k and b is not None:
        y = torch.baddbmm(b.unsqueeze(1), x3, w.transpose(1, 2))
    else:
        y = torch.matmul(x3, w.transpose(1, 2))
        if b is not None:
            y = y + b.unsqueeze(1)
    return y.view(k, *lead, n_out)


def mlp(init: Init, sizes: list[int], act, gain: float):
    """A perceptron ``sizes[0] -> ... -> sizes[-1]`` per replica: hidden layers
    ``act(linear)`` initialised with ``gain``, a linear output layer with gain 1; the
    layers drawn in order. Returns ``forward(x)``."""
    layers = [dense(init, a, b, gain=gain) for a, b in zip(sizes[:-2], sizes[1:-1], strict=True)]
    layers.append(dense(init, sizes[-2], sizes[-1]))

    def forward(x):
        for w, b in layers[:-1]:
            x = act(linear(x, w, b))
        return linear(x, *layers[-1])

    return forward


def per_replica(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``v (K, d)`` shaped to broadcast against ``like (K, ..., d)``."""
    return v.view(v.shape[0], *([1] * (like.dim() - 2)), v.shape[-1])


def layer_norm(x: torch.Tensor, g: torch.Tensor, b: torch.Tensor, eps: float = 1e-5):
    """Layer normalisation over the last axis with per-replica gain and bias ``(K, d)``."""
    y = F.layer_norm(x, x.shape[-1:], eps=eps)
    return torch.addcmul(per_replica(b, y), y, per_replica(g, y))


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per replica: ``logits (K, ..., C)``, labels ``y (K|1, ...)``."""
    k, c = logits.shape[0], logits.shape[-1]
    y = y.expand(logits.shape[:-1])
    losses = F.cross_entropy(logits.reshape(-1, c), y.reshape(-1), reduction="none")
    return losses.view(k, -1).mean(1)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of correct argmax predictions per replica, ``(K,)``."""
    k = logits.shape[0]
    hit = logits.argmax(-1) == y
    return hit.reshape(k, -1).to(logits.dtype).mean(1)


def embed(table: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Rows of per-replica tables ``(K, V, d)`` for ``tokens (K|1, ...)``: ``(K, ..., d)``."""
    k = table.shape[0]
    tokens = tokens.expand(k, *tokens.shape[1:])
    rows = torch.arange(k, device=tokens.device).view(k, *([1] * (tokens.dim() - 1)))
    return table[rows, tokens]


def conv1d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, stride: int = 1,
           padding: int = 0) -> torch.Tensor:
    """1-D convolution per replica, channels last, as unfold + one batched matmul.

    ``x (K, B, L, C_in)``, ``w (K, C_out, C_in, width)`` (torch's layout per
    replica), ``b (K, C_out)`` -> ``(K, B, L', C_out)`` with
    ``L' = (L + 2 padding - width) // stride + 1``.
    """
    k, c_out, c_in, width = w.shape
    batch = x.shape[1]
    cols = F.pad(x, (0, 0, padding, padding)).unfold(2, width, stride)  # (K, B, L', C_in, width)
    n_out = cols.shape[2]
    cols = cols.reshape(k, batch * n_out, c_in * width)
    y = torch.baddbmm(b.unsqueeze(1), cols, w.reshape(k, c_out, c_in * width).transpose(1, 2))
    return y.view(k, batch, n_out, c_out)


def attention(x: torch.Tensor, w_qkv: torch.Tensor, w_out: torch.Tensor, heads: int,
              causal: bool, last_only: bool = False) -> torch.Tensor:
    """Multi-head self-attention per replica: ``x (K, B, T, d)`` -> ``(K, B, T, d)``.

    ``w_qkv (K, 3d, d)`` and ``w_out (K, d, d)`` (no biases); the softmax
    attention is batched over replicas, sequences and heads. With
    ``last_only`` only the last position queries (output ``(K, B, 1, d)``).
    """
    k, b, t, d = x.shape
    dh = d // heads
    if last_only:
        q = linear(x[:, :, -1], w_qkv[:, :d]).view(k, b, 1, heads, dh)
        kk, v = linear(x, w_qkv[:, d:]).view(k, b, t, 2, heads, dh).unbind(3)  # (K, B, T, H, dh)
        # one query over a few keys: element-wise products beat tiny matmuls and fused kernels
        att = torch.softmax((q * kk).sum(-1) / math.sqrt(dh), dim=2)  # (K, B, T, H)
        y = (att.unsqueeze(-1) * v).sum(2, keepdim=True).transpose(2, 3)  # (K, B, H, 1, dh)
        t = 1
    else:
        qkv = linear(x, w_qkv).view(k, b, t, 3, heads, dh)
        q, kk, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each (K, B, H, T, dh)
        # 4-D (K * B, H, T, dh) inputs: the shape torch's fused CPU attention kernel takes
        q, kk, v = (z.reshape(k * b, heads, t, dh) for z in (q, kk, v))
        y = F.scaled_dot_product_attention(q, kk, v, is_causal=causal).view(k, b, heads, t, dh)
    return linear(y.transpose(2, 3).reshape(k, b, t, d), w_out)


def conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, padding: int = 0) -> torch.Tensor:
    """2-D convolution (stride 1) per replica, as unfold + one batched matmul.

    ``x (K|1, B, C_in, H, W)``, ``w (K, C_out, C_in, kh, kw)`` (torch's layout per
    replica), ``b (K, C_out)`` -> ``(K, B, C_out, H', W')``.
    """
    k, c_out, c_in, kh, kw = w.shape
    x = x.expand(k, *x.shape[1:])
    batch, _, h, wd = x.shape[1:]
    cols = F.unfold(x.reshape(k * batch, c_in, h, wd), (kh, kw), padding=padding)  # (KB, CKK, L)
    n = cols.shape[-1]
    cols = cols.view(k, batch, c_in * kh * kw, n).transpose(2, 3).reshape(k, batch * n, -1)
    y = torch.baddbmm(b.unsqueeze(1), cols, w.reshape(k, c_out, -1).transpose(1, 2))
    h_out, w_out = h + 2 * padding - kh + 1, wd + 2 * padding - kw + 1
    return y.view(k, batch, h_out, w_out, c_out).permute(0, 1, 4, 2, 3)


def gru(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
        b_hh: torch.Tensor) -> torch.Tensor:
    """A GRU layer per replica (torch's equations and gate order r, z, n), zero initial state.

    ``x (K, B, T, in)``, ``w_ih (K, 3H, in)``, ``w_hh (K, 3H, H)``, biases ``(K, 3H)``
    -> hidden states ``(K, B, T, H)``::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h
    """
    k, b, t, _ = x.shape
    hidden = w_hh.shape[-1]
    gates_x = linear(x, w_ih, b_ih).unbind(2)  # T of (K, B, 3H)
    h = x.new_zeros(k, b, hidden)
    w_hh_t = w_hh.transpose(1, 2)
    out = []
    for gx in gates_x:
        gh = torch.baddbmm(b_hh.unsqueeze(1), h, w_hh_t)
        xr, xz, xn = gx.chunk(3, -1)
        hr, hz, hn = gh.chunk(3, -1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = torch.lerp(n, h, z)
        out.append(h)
    return torch.stack(out, 2)
