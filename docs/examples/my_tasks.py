"""A user's own tasks for optforge (the worked example of docs/TASKS.md).

    optforge bench --optimizers adamw,lion --tasks docs/examples/my_tasks.py:my_task

`my_task` is a two-layer MLP with LayerNorm classifying scikit-learn's two
interleaved half-moons (generated, nothing downloaded); `tiny_task` returns
the same task with a smaller budget (a task may also be a function returning one).
"""

import torch
from sklearn.datasets import make_moons
from torch import nn

from optforge.tasks import ModelTask, accuracy


def model() -> nn.Module:
    """Called once per replica, under that replica's seed."""
    return nn.Sequential(nn.Linear(2, 32), nn.LayerNorm(32), nn.ReLU(), nn.Linear(32, 2))


def data():
    """(x_train, y_train, x_val, y_val), built once per process."""
    x, y = make_moons(n_samples=1000, noise=0.25, random_state=0)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    return x[:800], y[:800], x[800:], y[800:]


my_task = ModelTask(
    "moons_mlp", model=model, data=data, loss=nn.functional.cross_entropy,
    metric="accuracy", metric_fn=accuracy, higher_is_better=True,
    steps=300, batch=32, lr=1e-2,
)


def tiny_task() -> ModelTask:
    return ModelTask("moons_mlp_tiny", model=model, data=data,
                     loss=nn.functional.cross_entropy, steps=60, batch=32)
