"""The optimizer language: ops, IR, parser, printer, inference, hashing."""

from .errors import (
    ArityError,
    GradientIndependenceError,
    ProgramError,
    ProgramSyntaxError,
    ShapeError,
    SignatureError,
    UnknownNameError,
    UnknownOpError,
)
from .ir import INPUTS, Program
from .ops import REGISTRY

__all__ = [
    "INPUTS", "REGISTRY", "ArityError", "GradientIndependenceError", "Program", "ProgramError",
    "ProgramSyntaxError", "ShapeError", "SignatureError", "UnknownNameError", "UnknownOpError",
]
