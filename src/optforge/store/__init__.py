"""The run store: SQLite run directories, their journal and its replay check (docs/RUNS.md)."""

from .db import FILE, RESULT, STORE_ERRORS, RunStore, StoreError, write_result
from .journal import Journal, ReplayError

__all__ = ["FILE", "RESULT", "STORE_ERRORS", "Journal", "ReplayError", "RunStore", "StoreError",
           "write_result"]
