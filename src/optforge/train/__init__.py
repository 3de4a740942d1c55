"""The trainer: (task, program, hyperparameters, seeds) -> curves and metrics."""

from .result import DIVERGED, ERROR, OK, TrainResult
from .schedule import SCHEDULES, multipliers
from .trainer import clip_per_replica, clip_scale, replica_hparams, resolve_program, train

__all__ = ["DIVERGED", "ERROR", "OK", "SCHEDULES", "TrainResult", "clip_per_replica", "clip_scale",
           "multipliers", "replica_hparams", "resolve_program", "train"]
