"""Training tasks: real, cheap, deterministic, each runnable as K batched replicas."""

from __future__ import annotations

from .adding import AddingRNN
from .base import TIERS, Spec, Task, TaskInstance
from .chargru import CharGRU
from .charlm import CharLM
from .custom import ModelTask, TaskError, accuracy, is_reference, resolve
from .digits import DigitsAE, DigitsLogReg, DigitsMLP, DigitsNoisy
from .digits_cnn import DigitsCNN
from .linreg import ScaledLinReg
from .mnist1d_cnn import MNIST1DCNN
from .modadd import ModAdd
from .quadratic import NoisyQuadratic
from .tabular import RegressionMLP, SynthMLP, TabularMLP

_TASKS: dict[str, Task] = {
    t.name: t for t in (NoisyQuadratic(), DigitsLogReg(), DigitsMLP(), DigitsAE(), MNIST1DCNN(),
                ModAdd(), CharLM(), AddingRNN(), DigitsCNN(), TabularMLP(), RegressionMLP(),
                CharGRU(), SynthMLP(), DigitsNoisy(), ScaledLinReg())
}


def names() -> list[str]:
    return sorted(_TASKS)


def get(name: str) -> Task:
    """A built-in task by name, or a user's task by reference (``path/to/file.py:NAME`` or
    ``package.module:NAME``, see :mod:`.custom`)."""
    if is_reference(name):
        return resolve(name)
    try:
        return _TASKS[name]
    except KeyError:
        raise KeyError(f"no task {name!r}; known: {', '.join(names())}, or a user's task as "
                       "path/to/file.py:NAME or package.module:NAME") from None


__all__ = ["TIERS", "ModelTask", "Spec", "Task", "TaskError", "TaskInstance", "accuracy", "get",
           "names"]
