"""optforge: discover, verify, benchmark and ship optimizers for neural-network training."""

from . import zoo
from .lang import Program, ProgramError
from .optim import ProgramOptimizer

__all__ = ["Program", "ProgramError", "ProgramOptimizer", "zoo"]
__version__ = "0.1.0"
