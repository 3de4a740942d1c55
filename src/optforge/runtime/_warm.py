"""Imported by the process pool's fork server, so that every worker forked from it starts warm.

* One optimizer step: the lazy imports of the first step (``torch._dynamo`` and
  friends, seconds of work) happen once, in the server, instead of in every worker.
* One forward pass (no backward) of each ``TIER:TASK`` listed in the environment variable
  :data:`WARM_TASKS` (set by :class:`~optforge.runtime.pool.ProcessBackend` from its
  fitness's stages before the server starts): the tasks' data sets (cached per
  process; loading the digits takes a second, MNIST-1D three) are built once in the
  server and inherited by every worker, including those that replace a dead one.

At one torch thread, so that the server forks no thread pool; and never a backward pass:
on a CUDA build of torch (even training on the CPU) the first backward starts autograd's
device threads, and every process forked after that fails its own backward ("Unable to
handle autograd's threading in combination with fork-based multiprocessing"; every
evaluation failed on an H200 machine).
"""

import contextlib
import os

import torch

from .. import zoo
from ..optim import ProgramOptimizer
from .pool import WARM_TASKS

torch.set_num_threads(1)
_p = torch.zeros(2, 2, requires_grad=True)
_p.grad = torch.ones(2, 2)
ProgramOptimizer([_p], zoo.load("adamw"), lr=1e-3).step()
del _p

for _spec in filter(None, os.environ.get(WARM_TASKS, "").split(",")):
    _tier, _, _task = _spec.partition(":")
    with contextlib.suppress(Exception), torch.no_grad():  # else it loads in the workers
        from ..tasks import get

        get(_task).instantiate(_tier, [0]).loss(0)
