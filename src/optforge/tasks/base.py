"""What a training task is.

A :class:`Task` builds a :class:`TaskInstance`: ``K`` independent replicas of
one model (stacked weights: every parameter has a leading replica axis of
size ``K``), each with its own seed for initialisation and data order. One
forward/backward pass trains all replicas; because replica ``k``'s loss
depends only on replica ``k``'s weights, ``loss.sum().backward()`` gives each
replica its own gradient. Data are generated or shipped inside installed
packages and never downloaded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

TIERS = ("tiny", "small", "medium")


@dataclass(frozen=True)
class Spec:
    """Facts of one task at one tier."""

    size: dict[str, int]
    steps: int  # default step budget
    target: float  # documented validation-metric target that tuned AdamW reaches
    batch: int = 64


class TaskInstance(ABC):
    """``K`` replicas of a model, ready to train."""

    replicas: int
    params: list[torch.Tensor]

    @abstractmethod
    def loss(self, step: int) -> torch.Tensor:
        """Training loss of each replica on the minibatch of ``step``: shape ``(K,)``."""

    @abstractmethod
    def evaluate(self) -> dict[str, torch.Tensor]:
        """Validation ``loss`` and the task's metric for each replica, each ``(K,)``."""


@dataclass
class Task(ABC):
    """A training task with tiers of increasing cost."""

    name: str
    description: str
    metric: str  # name of the validation metric ("loss", "accuracy", ...)
    higher_is_better: bool
    specs: dict[str, Spec] = field(default_factory=dict)

    def spec(self, tier: str) -> Spec:
        if tier not in self.specs:
            raise KeyError(f"task {self.name!r} has no tier {tier!r}; tiers: {list(self.specs)}")
        return self.specs[tier]

    @abstractmethod
    def instantiate(self, tier: str = "tiny", seeds: Sequence[int] = (0,),
                    device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> TaskInstance:
        """``len(seeds)`` replicas, replica ``k`` initialised and fed by ``seeds[k]``."""


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def stack_init(seeds: Sequence[int], shape: tuple[int, ...], scale: float,
               dtype: torch.dtype, device) -> torch.Tensor:
    """``(K, *shape)`` normal init with std ``scale``, replica ``k`` drawn from ``seeds[k]``."""
    out = torch.stack([torch.randn(shape, generator=generator(s), dtype=torch.float64)
                       for s in seeds]) * scale
    return out.to(dtype=dtype, device=device).requires_grad_()
