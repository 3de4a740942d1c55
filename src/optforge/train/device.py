"""The one check of a ``--device`` value, before any run directory or training exists."""

from __future__ import annotations

import torch


def check_device(device: str) -> str:
    """``device`` if torch can train on it here, else ValueError saying why."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    available = {"cpu": lambda: True, "cuda": torch.cuda.is_available,
                 "mps": torch.backends.mps.is_available}.get(dev.type)
    if available is None or not available():
        raise ValueError(f"device {device!r} is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} does not exist: this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    return device
