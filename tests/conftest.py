import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_threads():
    """One intra-op thread per test worker: the suite runs two workers on two cores."""
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _kernel_cache(tmp_path_factory, monkeypatch):
    """Compiled-step kernels built by the tests go to one temporary cache (never the user's)."""
    monkeypatch.setenv("OPTFORGE_KERNEL_CACHE", str(tmp_path_factory.getbasetemp() / "kernels"))
