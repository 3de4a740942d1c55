"""Freed memory stays in the process's heap, so that the next large tensor reuses it.

glibc's ``malloc`` serves a request above its mmap threshold (128 KiB, raised on
the fly up to 32 MiB) with a fresh ``mmap`` and unmaps it on ``free``; it also
returns the top of the heap to the system beyond a trim threshold. Either way
every page of the next such tensor is faulted in and zeroed by the kernel again.
Training allocates the same large activations at every step and validation (the
validation set through ``K`` replicas: tens of MB per layer) at every
evaluation, so the faults cost as much as the arithmetic: on the transfer
configuration's evolution stage, 17,000 minor faults and a third to a half of the
time of each MNIST-1D or adding-problem validation (BENCHMARKS.md, "Search
evaluation").

:func:`keep_heap` sets both thresholds once per process (``mallopt``): requests
up to 1 GiB come from the heap and freed memory is kept for reuse, so a
training process holds its peak heap until it exits. Nothing else changes: the
allocator's alignment, hence every result, is the same. A no-op where the C
library has no ``mallopt`` (macOS, Windows).
"""

from __future__ import annotations

import ctypes
from functools import cache

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
MMAP_ABOVE = 1 << 30  # bytes: only larger requests are mapped (and unmapped) on their own
TRIM_ABOVE = (1 << 31) - 1  # bytes of free heap top kept: the most an int can say


@cache  # once per process
def keep_heap() -> bool:
    """Keep freed memory for reuse in this process (see the module docstring);
    True where the C library took the settings."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process runs on
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    took = [mallopt(M_MMAP_THRESHOLD, MMAP_ABOVE), mallopt(M_TRIM_THRESHOLD, TRIM_ABOVE)]
    return took == [1, 1]  # both are set even where one is refused
