"""Errors raised for malformed programs.

Every error is a :class:`ProgramError` that names the line and column of the
offending node and, where there is one, the offending op or variable name.
"""

from __future__ import annotations


class ProgramError(Exception):
    """A program that cannot be parsed, typed or run.

    ``line`` and ``col`` are 1-based positions in the program text (0 when the
    error concerns the program as a whole); ``name`` is the offending op or
    variable, if any.
    """

    def __init__(self, message: str, line: int = 0, col: int = 0, name: str | None = None):
        self.message = message
        self.line = line
        self.col = col
        self.name = name
        where = f"line {line}, column {col}: " if line else ""
        super().__init__(f"{where}{message}")


class ProgramSyntaxError(ProgramError):
    """Text that is not a single straight-line Python function of the allowed form."""


class UnknownNameError(ProgramError):
    """A variable read before it is defined, or a name that is neither an input nor an op."""


class UnknownOpError(ProgramError):
    """A call to a function that is not in the op registry."""


class ArityError(ProgramError):
    """An op called with the wrong number of arguments."""


class ShapeError(ProgramError):
    """Operands whose abstract shapes cannot be combined."""


class SignatureError(ProgramError):
    """A bad function signature or return statement."""


class GradientIndependenceError(ProgramError):
    """A program whose update does not depend on the gradient ``g``."""
