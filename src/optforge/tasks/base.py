"""What a training task is.

A :class:`Task` builds a :class:`TaskInstance`: ``K`` independent replicas of
one model (stacked weights: every parameter has a leading replica axis of
size ``K``), each with its own seed for initialisation and data order. One
forward/backward pass trains all replicas; because replica ``k``'s loss
depends only on replica ``k``'s weights, ``loss.sum().backward()`` gives each
replica its own gradient. Data are generated or shipped inside installed
packages and never downloaded.

Randomness is split into independent streams per replica: ``Init(seeds)``
draws replica ``k``'s weights from one generator seeded by ``seeds[k]``, and
:class:`Batches` draws its minibatches from another, as a pure function of
``(seeds[k], step)``. Replica ``k`` is therefore the same model on the same
data whichever replicas share its batch.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

TIERS = ("tiny", "small", "medium")

# stream tags mixed into a replica's seed
INIT, DATA, NOISE = 1, 2, 3


DEFAULT_LR = 1e-3
"""AdamW's learning rate in a Spec that names none."""


@dataclass(frozen=True)
class Spec:
    """Facts of one task at one tier.

    ``size`` holds the tier's size knobs, ``steps`` the default step budget,
    ``target`` the documented value of the validation metric that AdamW with
    ``adamw`` (its hyperparameters, under the trainer's default schedule)
    reaches within ``steps`` steps, ``batch`` the minibatch size (0: the whole
    training set every step).
    """

    size: dict[str, int]
    steps: int
    target: float
    batch: int = 64
    adamw: dict[str, float] = field(default_factory=lambda: {"lr": DEFAULT_LR})


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

    def num_params(self) -> int:
        """Parameters of one replica."""
        return sum(p[0].numel() for p in self.params)


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

    def reached(self, value: float, tier: str) -> bool:
        """Whether a validation-metric ``value`` meets the tier's target."""
        target = self.spec(tier).target
        if not math.isfinite(value):
            return False
        return value >= target if self.higher_is_better else value <= target

    def instantiate(self, tier: str = "tiny", seeds: Sequence[int] = (0,),
                    device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> TaskInstance:
        """``len(seeds)`` replicas, replica ``k`` initialised and fed by ``seeds[k]``."""
        spec = self.spec(tier)
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("need at least one seed (one replica)")
        return self.build(spec, seeds, torch.device(device), dtype)

    @abstractmethod
    def build(self, spec: Spec, seeds: list[int], device: torch.device,
              dtype: torch.dtype) -> TaskInstance:
        """The instance for a validated spec and seeds."""


# ---------------------------------------------------------------- randomness

_MASK = (1 << 64) - 1


def mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 over the sequence)."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (int(v) & _MASK)) & _MASK
        x = (x + 0x9E3779B97F4A7C15) & _MASK
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        x = z ^ (z >> 31)
    return x >> 1


def generator(seed: int, *stream: int) -> torch.Generator:
    """A CPU generator for ``seed`` (and a stream tag, if given)."""
    return torch.Generator().manual_seed(mix(seed, *stream) if stream else int(seed))


class Init:
    """Stacked parameter initialisation: replica ``k`` draws from ``seeds[k]``'s stream.

    Parameters are drawn in call order, so replica ``k``'s weights depend only
    on ``seeds[k]`` and the model's architecture.
    """

    def __init__(self, seeds: Sequence[int], device, dtype):
        self.gens = [generator(s, INIT) for s in seeds]
        self.device, self.dtype = device, dtype
        self.params: list[torch.Tensor] = []

    def _stack(self, draws: list[torch.Tensor]) -> torch.Tensor:
        t = torch.stack(draws).to(device=self.device, dtype=self.dtype).requires_grad_()
        self.params.append(t)
        return t

    def normal(self, shape: Sequence[int], std: float) -> torch.Tensor:
        """``(K, *shape)`` with entries ``N(0, std^2)``."""
        return self._stack([torch.randn(tuple(shape), generator=g, dtype=torch.float64) * std
                            for g in self.gens])

    def uniform(self, shape: Sequence[int], bound: float) -> torch.Tensor:
        """``(K, *shape)`` with entries ``U(-bound, bound)``."""
        return self._stack([(torch.rand(tuple(shape), generator=g, dtype=torch.float64) * 2 - 1)
                            * bound for g in self.gens])

    def orthogonal(self, n: int, gain: float = 1.0) -> torch.Tensor:
        """``(K, n, n)`` random orthogonal matrices (QR of a Gaussian) times ``gain``."""
        draws = []
        for g in self.gens:
            q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
            draws.append(q * torch.sign(torch.diagonal(r)) * gain)
        return self._stack(draws)

    def const(self, shape: Sequence[int], value: float) -> torch.Tensor:
        """``(K, *shape)`` filled with ``value`` (draws nothing)."""
        return self._stack([torch.full(tuple(shape), float(value), dtype=torch.float64)
                            for _ in self.gens])


class Stream:
    """Per-step random tensors, one row per replica, as a pure function of (seed, step).

    ``draw(seed, start, stop)`` returns the draws of steps ``start..stop-1`` for
    one replica, stacked on a leading axis. Draws are made ``window`` steps at
    a time for all replicas and cached, so a training step costs one slice.
    """

    def __init__(self, seeds: Sequence[int], draw: Callable[[int, int, int], torch.Tensor],
                 window: int, device):
        self.seeds = list(seeds)
        self.draw = draw
        self.window = max(1, int(window))
        self.device = device
        self._start = -1
        self._block: torch.Tensor | None = None

    def __call__(self, step: int) -> torch.Tensor:
        """Draws of ``step``: ``(K, ...)``."""
        step = int(step)
        if step < 0:
            raise ValueError(f"step must be non-negative, got {step}")
        w = step // self.window
        if w != self._start:
            a, b = w * self.window, (w + 1) * self.window
            block = torch.stack([self.draw(s, a, b) for s in self.seeds], dim=1)
            self._block = block.to(self.device)
            self._start = w
        return self._block[step - self._start * self.window]


class Batches(Stream):
    """Minibatch indices into ``n`` training examples: epochs of random permutations.

    Replica ``k`` reads the infinite sequence ``perm_0, perm_1, ...`` where
    ``perm_e`` is a random permutation of ``range(n)`` drawn from
    ``(seeds[k], e)``; step ``t`` takes positions ``t*batch .. (t+1)*batch - 1``
    (sampling without replacement within an epoch). ``__call__(step)`` gives
    ``(K, batch)`` indices.
    """

    def __init__(self, seeds: Sequence[int], n: int, batch: int, device, window: int = 64):
        if n < 1 or batch < 1:
            raise ValueError(f"need n >= 1 and batch >= 1, got n={n}, batch={batch}")
        self.n, self.batch = n, batch
        super().__init__(seeds, self._draw, window, device)

    def _draw(self, seed: int, start: int, stop: int) -> torch.Tensor:
        n, b = self.n, self.batch
        lo, hi = start * b, stop * b
        perms = [torch.randperm(n, generator=generator(seed, DATA, e))
                 for e in range(lo // n, (hi - 1) // n + 1)]
        flat = torch.cat(perms)[lo - (lo // n) * n:][: hi - lo]
        return flat.view(stop - start, b)


def split(n: int, n_val: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random train/validation split of ``range(n)`` (the same for every replica)."""
    perm = torch.randperm(n, generator=generator(seed))
    return perm[n_val:], perm[:n_val]
