"""Imported by the process pool's fork server: one optimizer step so that the lazy imports
of the first step (``torch._dynamo`` and friends, seconds of work) happen once, in the
server, instead of in every worker."""

import torch

from .. import zoo
from ..optim import ProgramOptimizer

_p = torch.zeros(2, 2, requires_grad=True)
_p.grad = torch.ones(2, 2)
ProgramOptimizer([_p], zoo.load("adamw"), lr=1e-3).step()
del _p
