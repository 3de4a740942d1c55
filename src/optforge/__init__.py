"""optforge: discover, verify, benchmark and ship optimizers for neural-network training."""

from . import zoo
from .lang import Program, ProgramError
from .optim import ProgramOptimizer, create_optimizer

__all__ = ["Program", "ProgramError", "ProgramOptimizer", "create_optimizer", "zoo"]
__version__ = "0.1.0"
