"""Offline data sets, built once per process and cached.

* ``digits()``: scikit-learn's 8x8 handwritten digits (1797 images shipped
  inside scikit-learn), pixels scaled to ``[0, 1]``.
* ``mnist1d()``: MNIST-1D (Greydanus, 2020) from the ``mnist1d`` package's
  procedural generator with its default arguments (4000 train / 1000 test
  signals of length 40). ``make_dataset`` is called directly: the package's
  ``get_dataset`` would try to download a pickle first.
* ``text()``: the English documentation in the standard library's
  ``pydoc_data.topics`` (about 460 KB), as ASCII codes; characters outside
  ASCII become code 0. The text is that of the running Python version.

Nothing here touches the network.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import numpy as np
import torch


@contextmanager
def _global_rngs_kept() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's global generators afterwards.

    Imports (scikit-learn's, for one) and ``mnist1d.make_dataset`` (which
    reseeds) touch them; building a data set must not change a caller's
    random streams.
    """
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


@cache
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: ``x (1797, 8, 8)`` float32 in [0, 1], ``y (1797,)`` int64 labels."""
    with _global_rngs_kept():
        from sklearn.datasets import load_digits

        d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32) / 16.0
    return x, torch.tensor(d.target, dtype=torch.int64)


@cache
def mnist1d() -> dict[str, torch.Tensor]:
    """``{"x", "y", "x_test", "y_test"}``: float32 signals ``(n, 40)``, int64 labels."""
    with _global_rngs_kept():
        from mnist1d.data import get_dataset_args, make_dataset

        d = make_dataset(get_dataset_args())
    return {
        "x": torch.tensor(d["x"], dtype=torch.float32),
        "y": torch.tensor(d["y"], dtype=torch.int64),
        "x_test": torch.tensor(d["x_test"], dtype=torch.float32),
        "y_test": torch.tensor(d["y_test"], dtype=torch.int64),
    }


VOCAB = 128  # ASCII


@cache
def text() -> torch.Tensor:
    """The pydoc topics as a 1-D int64 tensor of ASCII codes (topics in sorted order)."""
    with _global_rngs_kept():
        from pydoc_data.topics import topics
    s = "\n\n".join(topics[k] for k in sorted(topics))
    codes = np.frombuffer(s.encode("utf-32-le"), dtype=np.uint32)
    codes = np.where(codes < VOCAB, codes, 0)
    return torch.tensor(codes.astype(np.int64))


def _standardise(x: np.ndarray) -> torch.Tensor:
    x = (x - x.mean(0)) / x.std(0)
    return torch.tensor(x, dtype=torch.float32)


@cache
def breast_cancer() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's Wisconsin breast-cancer table: ``x (569, 30)`` standardised
    features, ``y (569,)`` int64 labels (0 malignant, 1 benign)."""
    with _global_rngs_kept():
        from sklearn.datasets import load_breast_cancer

        d = load_breast_cancer()
    return _standardise(d.data), torch.tensor(d.target, dtype=torch.int64)


@cache
def diabetes() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's diabetes regression table: ``x (442, 10)`` standardised features,
    ``y (442,)`` standardised disease progression (float32)."""
    with _global_rngs_kept():
        from sklearn.datasets import load_diabetes

        d = load_diabetes()
    y = (d.target - d.target.mean()) / d.target.std()
    return _standardise(d.data), torch.tensor(y, dtype=torch.float32)
