"""The run store: SQLite run directories, recording and replay (docs/RUNS.md)."""

from .db import FILE, STORE_ERRORS, RunStore, StoreError
from .recorder import RecordingEvaluator, ReplayError

__all__ = ["FILE", "STORE_ERRORS", "RecordingEvaluator", "ReplayError", "RunStore", "StoreError"]
