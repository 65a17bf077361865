"""What tests train: a job that takes well under a second, as the API's JSON body or as a TrainSpec,
and a learnable dataset in MNIST's shape that needs no files."""

from __future__ import annotations

from typing import Any

import numpy as np

from service.ml.data import DATASETS, Dataset
from service.ml.spec import TrainSpec


def job_body(**changes: Any) -> dict[str, Any]:
    """A POST /jobs body: NumPy, 16 hidden units, one epoch of 500 images (8 steps of 64), validated on
    1,000 others of the real MNIST; `changes` on top."""
    return {
        "backend": "numpy",
        "hidden_layers": [16],
        "epochs": 1,
        "train_limit": 500,
        "validation_size": 1000,
    } | changes


def tiny_spec(**changes: Any) -> TrainSpec:
    """job_body() as the TrainSpec the store and the worker take."""
    return TrainSpec.model_validate(job_body(**changes))


def make_tiny_dataset(n_train: int = 600, n_test: int = 200, seed: int = 0) -> Dataset:
    """A learnable 10-class problem in MNIST's shape: noisy copies of ten random prototypes."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((10, 784)).astype(np.float32)

    def split(n):
        labels = rng.integers(0, 10, n)
        images = np.clip(prototypes[labels] + 0.3 * rng.standard_normal((n, 784)), 0, 1).astype(np.float32)
        return images, labels.astype(np.int64)

    train_x, train_y = split(n_train)
    test_x, test_y = split(n_test)
    return Dataset("mnist", train_x, train_y, test_x, test_y, DATASETS["mnist"].classes)
