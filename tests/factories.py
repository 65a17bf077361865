"""What tests train: a job that takes well under a second, as the API's JSON body or as a TrainSpec,
and a learnable dataset in MNIST's shape that needs no files."""

from __future__ import annotations

from typing import Any

import numpy as np

from service.ml.data import DATASETS, Dataset
from service.ml.spec import TrainSpec


def job_body(**changes: Any) -> dict[str, Any]:
    """A POST /jobs body: NumPy, 16 hidden units, one epoch of 500 images (8 steps of 64); `changes` on top."""
    return {"backend": "numpy", "hidden_layers": [16], "epochs": 1, "train_limit": 500} | changes


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


def store_trained_job(sessions: Any, spec: TrainSpec, every: int, train_images: int = 60_000) -> int:
    """A succeeded job of `spec` with a loss every `every` steps and every epoch's metrics, written
    straight through the store as a worker would (no training): what a long job leaves behind."""
    from types import SimpleNamespace

    from service.store.db import session_scope
    from service.store.jobs import claim_job, enqueue_job, finish_job, record_epoch, record_progress

    per_epoch = -(-min(spec.train_limit or train_images, train_images) // spec.batch_size)
    steps = per_epoch * spec.epochs
    with session_scope(sessions) as s:
        job_id = enqueue_job(s, spec).id
    with session_scope(sessions) as s:
        worker = f"store-{job_id}"
        claim_job(s, worker)
    for first in range(every, steps + 1, every * 20_000):
        batch = range(first, min(first + every * 20_000, steps + 1), every)
        losses = [(1 + (n - 1) // per_epoch, n, 2.3 * 0.9999 ** (n / every)) for n in batch]
        with session_scope(sessions) as s:
            record_progress(s, job_id, worker, losses, steps, every)
    eye = [[int(i == j) * 100 for j in range(10)] for i in range(10)]
    with session_scope(sessions) as s:
        for epoch in range(1, spec.epochs + 1):
            record_epoch(s, job_id, worker, epoch, 2.3 / epoch, 0.9, 0.85, 1.0)
        finish_job(s, job_id, worker, SimpleNamespace(weights=b"not read here", train_accuracy=0.9,
                   test_accuracy=0.85, confusion_train=eye, confusion_test=eye, seconds=200.0))  # fmt: skip
    return job_id
