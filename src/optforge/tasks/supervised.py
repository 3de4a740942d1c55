"""The common shape of a supervised task instance.

A model is a function ``forward(x) -> out`` of inputs with a leading replica
axis (``K``, or 1 for data shared by all replicas) closing over stacked
parameters. Training draws replica ``k``'s minibatch ``(x[i], y[i])`` with
indices ``i`` from :class:`~optforge.tasks.base.Batches`; validation runs
every replica on the whole validation set.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import Batches, TaskInstance

Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``t[idx]`` for a 2-D index (one ``index_select``, faster than advanced indexing)."""
    return t.index_select(0, idx.reshape(-1)).view(*idx.shape, *t.shape[1:])


class Supervised(TaskInstance):
    """``K`` replicas of ``forward`` trained on ``objective``, validated on ``metric``.

    Args:
        params: the stacked parameters ``forward`` reads.
        forward: ``x (K|1, B, ...) -> out (K, B, ...)``.
        objective: ``(out, y) -> (K,)`` training loss.
        metric: ``(name, fn)`` of the validation metric, ``fn(out, y) -> (K,)``.
        train, val: ``(x, y)`` tensors on the instance's device.
        batch: minibatch size; 0 trains every replica on the whole training set.
        seeds: one per replica (data order).
    """

    def __init__(self, params: list[torch.Tensor], forward: Callable[[torch.Tensor], torch.Tensor],
                 objective: Fn, metric: tuple[str, Fn],
                 train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                 batch: int, seeds: list[int]):
        self.params = params
        self.replicas = len(seeds)
        self.forward, self.objective = forward, objective
        self.metric_name, self.metric_fn = metric
        self.train_x, self.train_y = train
        self.val_x, self.val_y = val
        n = self.examples()
        device = self.train_y.device
        self.batches = Batches(seeds, n, batch, device) if batch > 0 else None

    def examples(self) -> int:
        """Number of training examples the minibatches index."""
        return self.train_y.shape[0]

    def fetch(self, idx: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Minibatch ``(x, y)`` for indices ``idx (K, B)``; ``None``: the whole set (axis 1)."""
        if idx is None:
            return self.train_x.unsqueeze(0), self.train_y.unsqueeze(0)
        return _take(self.train_x, idx), _take(self.train_y, idx)

    def loss(self, step: int) -> torch.Tensor:
        x, y = self.fetch(self.batches(step) if self.batches is not None else None)
        return self.objective(self.forward(x), y)

    @torch.no_grad()
    def evaluate(self) -> dict[str, torch.Tensor]:
        x, y = self.val_x.unsqueeze(0), self.val_y.unsqueeze(0)
        out = self.forward(x)
        return {"loss": self.objective(out, y), self.metric_name: self.metric_fn(out, y)}
