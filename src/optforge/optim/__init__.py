"""Optimizers from programs: the runtime, ``ProgramOptimizer`` and ``create_optimizer``."""

from .create import OptimizerFactory, create_optimizer, default_no_decay
from .program_optimizer import ProgramOptimizer

__all__ = ["OptimizerFactory", "ProgramOptimizer", "create_optimizer", "default_no_decay"]
