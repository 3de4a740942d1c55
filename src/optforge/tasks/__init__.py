"""Training tasks: real, cheap, deterministic, each runnable as K batched replicas."""

from __future__ import annotations

from .base import TIERS, Spec, Task, TaskInstance
from .quadratic import NoisyQuadratic

_TASKS: dict[str, Task] = {t.name: t for t in (NoisyQuadratic(),)}


def names() -> list[str]:
    return sorted(_TASKS)


def get(name: str) -> Task:
    try:
        return _TASKS[name]
    except KeyError:
        raise KeyError(f"no task {name!r}; known: {', '.join(names())}") from None


__all__ = ["TIERS", "Spec", "Task", "TaskInstance", "get", "names"]
