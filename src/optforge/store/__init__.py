"""The run store: SQLite run directories, recording and replay (docs/RUNS.md)."""

from .db import FILE, RunStore, StoreError
from .recorder import RecordingEvaluator, ReplayError

__all__ = ["FILE", "RecordingEvaluator", "ReplayError", "RunStore", "StoreError"]
