"""Shared test fixtures: a tiny encoder and small synthetic volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn


class TinyEncoder(nn.Module):
    """A blob detector small enough for fast tests: conv, ReLU, global max."""

    def __init__(self, channels: int = 8, seed: int = 0) -> None:
        super().__init__()
        # Seeded, so a test's outcome does not depend on which tests ran before it.
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.features = nn.Sequential(
                nn.Conv2d(1, channels, 3, padding=1),
                nn.ReLU(),
                nn.AdaptiveMaxPool2d(1),
                nn.Flatten(),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker a core, at most 4 (each holds its own torch and models)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, cores or 1))


@pytest.fixture(autouse=True, scope="session")
def _data_home_of_the_suite(tmp_path_factory):
    """Caches go to a temporary data home, never the user's (subprocesses inherit it)."""
    import os

    previous = os.environ.get("SLICELEARN_DATA")
    os.environ["SLICELEARN_DATA"] = str(tmp_path_factory.mktemp("slicelearn_data"))
    yield
    if previous is None:
        os.environ.pop("SLICELEARN_DATA", None)
    else:
        os.environ["SLICELEARN_DATA"] = previous


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # One thread: the test models are tiny, and busy-waiting OpenMP threads
    # slow to a crawl when another process shares the two cores.
    torch.set_num_threads(1)


@pytest.fixture
def tiny_encoder() -> TinyEncoder:
    return TinyEncoder()


@pytest.fixture
def small_volumes() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 8, 10, 9)).astype(np.float32)
    y = X[:, :4].mean(axis=(1, 2, 3)) * 10 + 50
    return X, y.astype(np.float32)


def fast_params(**overrides):
    """Estimator parameters for second-scale fits on tiny volumes."""
    params = dict(
        weights=None,
        max_epochs=2,
        batch_size=4,
        lr=1e-3,
        verbose=0,
        random_state=0,
        embed_dim=8,
        attention_heads=2,
        head_hidden=8,
        # "auto" autocasts to bf16 on a CPU with native bf16 (this machine's
        # kind, not every CI machine): the tests' tolerances are fp32's.
        precision="fp32",
    )
    params.update(overrides)
    if "encoder" not in params:
        params["encoder"] = TinyEncoder()
    return params


def write_scans(folder, n: int = 6, shape=(12, 14, 10), seed: int = 0, affine=None):
    """Write ``n`` small random NIfTI scans (positive intensities); return their paths."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    affine = np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine
    paths = []
    for index in range(n):
        data = rng.gamma(2.0, 50.0, size=shape).astype(np.float32)
        path = folder / f"sub-{index:02d}_T1w.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), path)
        paths.append(str(path))
    return paths


@pytest.fixture
def count_preprocess(monkeypatch):
    """Count real preprocessing runs (cache misses)."""
    from slicelearn.data import VolumePreprocessor

    calls = []
    original = VolumePreprocessor._preprocess

    def counting(self, item, index):
        calls.append(str(item))
        return original(self, item, index)

    monkeypatch.setattr(VolumePreprocessor, "_preprocess", counting)
    return calls
