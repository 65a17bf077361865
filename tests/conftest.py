"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def real_data_dir() -> Path:
    """MLPLAB_DATA_DIR, else ../shared/data beside the checkout (where CI lays the MNIST files)."""
    return Path(os.environ.get("MLPLAB_DATA_DIR") or REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return real_data_dir()


@pytest.fixture(scope="session")
def mnist(data_dir):
    """The real MNIST. Missing files fail the test that asks for them: never a skip."""
    from service.ml.data import load_dataset

    return load_dataset("mnist", data_dir, download=False)


def make_tiny_dataset(n_train: int = 600, n_test: int = 200, seed: int = 0):
    """A learnable 10-class problem in MNIST's shape: noisy copies of ten random prototypes."""
    from service.ml.data import Dataset

    rng = np.random.default_rng(seed)
    prototypes = rng.random((10, 784)).astype(np.float32)

    def split(n):
        labels = rng.integers(0, 10, n)
        images = np.clip(prototypes[labels] + 0.3 * rng.standard_normal((n, 784)), 0, 1).astype(np.float32)
        return images, labels.astype(np.int64)

    train_x, train_y = split(n_train)
    test_x, test_y = split(n_test)
    return Dataset("mnist", train_x, train_y, test_x, test_y, tuple(str(i) for i in range(10)))


@pytest.fixture
def tiny_dataset():
    return make_tiny_dataset()
