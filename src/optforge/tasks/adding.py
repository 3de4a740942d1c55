"""The adding problem with a tanh recurrent network (Hochreiter & Schmidhuber, 1997).

Each input is a sequence of ``length`` pairs ``(value, marker)`` with values
``U(0, 1)`` and exactly two markers, one in each half; the target is the sum
of the two marked values. An Elman network ``h_t = tanh(W_x x_t + W_h h_{t-1} + b)``
(``W_h`` orthogonal at init) reads the sequence and a linear read-out of
``h_T`` predicts the sum. The loss is the mean squared error; predicting the
constant 1 scores ``1/6``, so a validation MSE well below that means the
network carries the marked values across the whole sequence (a long-horizon,
exploding/vanishing-gradient regime unlike the other tasks).

Training data are fresh every step (replica ``k``'s from ``seeds[k]``);
validation is a fixed set of ``N_VAL`` sequences.
"""

from __future__ import annotations

import torch

from .base import DATA, Init, Spec, Stream, Task, TaskInstance, generator
from .nn import dense, linear

N_VAL = 1000


def sequences(n: int, length: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` adding-problem inputs ``(n, length, 2)`` and targets ``(n,)``."""
    values = torch.rand(n, length, generator=g)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=g)
    second = torch.randint(half, length, (n,), generator=g)
    marks = torch.zeros(n, length)
    rows = torch.arange(n)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    return torch.stack([values, marks], dim=-1), (values * marks).sum(1)


class _Instance(TaskInstance):
    def __init__(self, spec: Spec, seeds: list[int], device, dtype):
        self.replicas = len(seeds)
        self.length, hidden = spec.size["length"], spec.size["hidden"]
        self.batch = spec.batch
        init = Init(seeds, device, dtype)
        self.w_in = dense(init, 2, hidden)
        self.w_h = init.orthogonal(hidden)
        self.w_out = dense(init, hidden, 1)
        self.params = init.params
        self.dtype = dtype
        per_step = self.batch * self.length * 3
        self.data = Stream(seeds, self._draw, max(1, min(64, 2**20 // per_step)), device)
        x, y = sequences(N_VAL, self.length, generator(0, DATA))
        self.val = (x.to(device=device, dtype=dtype).unsqueeze(0),
                    y.to(device=device, dtype=dtype).unsqueeze(0))

    def _draw(self, seed: int, start: int, stop: int) -> torch.Tensor:
        x, y = sequences((stop - start) * self.batch, self.length, generator(seed, DATA, start))
        packed = torch.cat([x.flatten(1), y.unsqueeze(1)], dim=1)
        return packed.view(stop - start, self.batch, -1).to(self.dtype)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``x (K|1, B, length, 2)`` -> predictions ``(K, B)``."""
        # input terms of every step; unbind (not indexing) keeps the backward linear in length
        u = linear(x, *self.w_in).unbind(2)
        w_h = self.w_h.transpose(1, 2)
        h = torch.tanh(u[0])
        for u_t in u[1:]:
            h = torch.tanh(torch.baddbmm(u_t, h, w_h))
        return linear(h, *self.w_out).squeeze(-1)

    def loss(self, step: int) -> torch.Tensor:
        packed = self.data(step)  # (K, B, length * 2 + 1)
        x = packed[..., :-1].unflatten(-1, (self.length, 2))
        return (self.predict(x) - packed[..., -1]).square().mean(1)

    @torch.no_grad()
    def evaluate(self) -> dict[str, torch.Tensor]:
        x, y = self.val
        mse = (self.predict(x) - y).square().mean(1)
        return {"loss": mse, "mse": mse}


class AddingRNN(Task):
    def __init__(self) -> None:
        super().__init__(
            name="adding_rnn",
            description="tanh RNN on the adding problem (long-horizon memory)",
            metric="mse", higher_is_better=False,
            specs={
                "tiny": Spec({"length": 20, "hidden": 32}, steps=1000, target=0.05, batch=64,
                             adamw={"lr": 1e-2, "wd": 0.0}),
                "small": Spec({"length": 40, "hidden": 64}, steps=2000, target=0.03, batch=64,
                              adamw={"lr": 3e-3, "wd": 0.0}),
                "medium": Spec({"length": 60, "hidden": 128}, steps=4000, target=0.03,
                               batch=64, adamw={"lr": 1e-3, "wd": 0.0}),
            },
        )

    def build(self, spec, seeds, device, dtype):
        return _Instance(spec, seeds, device, dtype)
