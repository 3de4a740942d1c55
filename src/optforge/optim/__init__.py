"""Optimizers from programs: the runtime, ``ProgramOptimizer`` and ``create_optimizer``."""

from .create import create_optimizer, default_no_decay
from .program_optimizer import ProgramOptimizer

__all__ = ["ProgramOptimizer", "create_optimizer", "default_no_decay"]
