"""Optimizers from programs: the runtime and ``ProgramOptimizer``."""

from .program_optimizer import ProgramOptimizer

__all__ = ["ProgramOptimizer"]
