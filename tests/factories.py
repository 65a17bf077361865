"""What tests train: a job that takes well under a second, as the API's JSON body or as a TrainSpec,
a learnable dataset in MNIST's shape that needs no files, and a database of many finished jobs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from service.ml.data import DATASETS, Dataset
from service.ml.spec import TrainSpec
from service.ml.train import EpochEnd
from service.ml.weights import dump_weights
from service.store.db import session_scope
from service.store.jobs import (
    claim_job,
    enqueue_job,
    fail_job,
    finish_job,
    mark_cancelled,
    record_epoch,
    record_progress,
)


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


def alike_study() -> dict[str, Any]:
    """A grid study whose two trials train alike: job_body's 500 images in one batch of 500 or of 1,000."""
    return {
        "base": job_body(),
        "space": {"batch_size": {"choice": [500, 1000]}},
        "sampler": "grid",
        "trials": 2,
        "parallelism": 2,
    }


def learner_body(**changes: Any) -> dict[str, Any]:
    """job_body() that learns in its one epoch (ReLU, He, Adam at 0.01): a model worth predicting with."""
    return job_body(activation="relu", init="he", optimizer="adam", learning_rate=0.01) | changes


def tiny_spec(**changes: Any) -> TrainSpec:
    """job_body() as the TrainSpec the store and the worker take."""
    return TrainSpec.model_validate(job_body(**changes))


def no_holdout(**fields: Any) -> TrainSpec:
    """A TrainSpec for make_tiny_dataset()'s 600 training images: all of them trained on, none held out
    (the default validation_size asks for more images than it has)."""
    return TrainSpec(validation_size=0, **fields)


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


def store_trained_job(
    sessions: Any,
    spec: TrainSpec,
    every: int,
    train_images: int = 60_000,
    confusion: list[list[int]] | None = None,
) -> int:
    """A succeeded job of `spec` with a loss every `every` steps and every epoch's metrics, written
    straight through the store as a worker would (no training): what a long job leaves behind. Its
    confusion matrices are `confusion` (100 right answers a class by default)."""
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
    eye = confusion or [[int(i == j) * 100 for j in range(10)] for i in range(10)]
    with session_scope(sessions) as s:
        for epoch in range(1, spec.epochs + 1):
            record_epoch(s, job_id, worker, EpochEnd(epoch, 2.3 / epoch, 0.9, 0.85, 1.0))
        finish_job(s, job_id, worker, SimpleNamespace(weights=b"not read here", train_accuracy=0.9,
                   test_accuracy=0.85, validation_accuracy=None, confusion_train=eye, confusion_test=eye,
                   best_epoch=spec.epochs, stopped_epoch=spec.epochs, predictions={}, seconds=200.0))  # fmt: skip
    return job_id


# --- many finished jobs ------------------------------------------------------------------------------

# Realistic MNIST runs (60,000 images at batch 64, a loss every 100 steps) on small networks, so that
# 10,000 of them fit on a disk: a few tens of kB of weights each.
STEPS_PER_EPOCH = 938
LAYERS = ([8], [16], [32], [16, 8])


@dataclass(frozen=True)
class History:
    """What finished_jobs wrote: the ids of its jobs, of the succeeded ones, and of its sweeps."""

    jobs: list[int]
    models: list[int]
    sweeps: dict[str, list[int]]


def finished_jobs(
    factory: sessionmaker[Session],
    n: int,
    sweep: int = 500,
    per_transaction: int = 250,
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
) -> History:
    """Write `n` finished jobs through the store's own verbs, as workers would have, `per_transaction`
    at a time: enqueue_job, claim_job, record_progress (every 100th step's loss), record_epoch (each
    epoch), then finish_job (85 %, with real weights), fail_job (10 %) or mark_cancelled (5 %).

    The first `sweep` jobs are one sweep; one job in five after them belongs to a sweep of 8; the rest
    are single jobs. Specs vary (layers, activation, optimizer, learning rate, 5-15 epochs, seed),
    and so do accuracies, durations and creation times (a minute apart, from `start`).
    """
    rng = np.random.default_rng(0)
    params = {tuple(h): _random_params(rng, h) for h in LAYERS}
    history = History([], [], {})
    for first in range(0, n, per_transaction):
        with session_scope(factory) as session:
            for i in range(first, min(n, first + per_transaction)):
                job_id = _one_finished_job(session, i, sweep, params, rng, start, history.sweeps)
                session.expunge_all()  # each verb's UPDATE would otherwise look through every job so far
                history.jobs.append(job_id)
                if i % 20 not in (3, 7, 13):  # 17 of 20 succeed
                    history.models.append(job_id)
    return history


def _random_params(rng: np.random.Generator, hidden: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    sizes = [784, *hidden, 10]
    return [
        (rng.normal(0, 0.1, (a, b)).astype(np.float32), np.zeros(b, dtype=np.float32))
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def _sweep_of(i: int, sweep: int) -> str | None:
    if i < sweep:
        return "5eed" + "0" * 8
    return f"{i // 40:012x}" if i % 5 == 0 else None


def _one_finished_job(session, i, sweep, params, rng, start, sweeps) -> int:
    spec = TrainSpec.model_validate(
        {
            "backend": ("numpy", "torch")[i % 2],
            "hidden_layers": LAYERS[i % len(LAYERS)],
            "activation": ("relu", "sigmoid", "tanh")[i % 3],
            "optimizer": ("sgd", "momentum", "adam")[(i // 3) % 3],
            "learning_rate": (0.001, 0.01, 0.05, 0.1)[(i // 9) % 4],
            "epochs": (5, 10, 15)[(i // 2) % 3],
            "seed": i,
        }
    )
    created = start + timedelta(minutes=i)
    began = created + timedelta(seconds=float(rng.uniform(1, 600)))
    sweep_id = _sweep_of(i, sweep)
    job = enqueue_job(session, spec, sweep_id=sweep_id, now=created)
    if sweep_id:
        sweeps.setdefault(sweep_id, []).append(job.id)
    worker = f"bench:{i % 4}"
    claimed = claim_job(session, worker, now=began)
    assert claimed is not None and claimed.id == job.id, "finished_jobs needs a database without queued jobs"
    accuracy = float(rng.uniform(0.80, 0.98))
    validation = accuracy + 0.01 * (i % 7 - 3)  # near the test accuracy, not in its order
    epoch_seconds = float(rng.uniform(0.5, 3.0))
    losses = [
        (1 + (s - 1) // STEPS_PER_EPOCH, s, 2.3 * np.exp(-s / 3000) + 0.05 * float(rng.random()))
        for s in range(100, spec.epochs * STEPS_PER_EPOCH + 1, 100)
    ]
    record_progress(session, job.id, worker, losses, steps=spec.epochs * STEPS_PER_EPOCH, now=began)
    for epoch in range(1, spec.epochs + 1):
        reached = accuracy * (1 - 0.5 ** (epoch + 2))
        record_epoch(session, job.id, worker, EpochEnd(epoch, 2.3 * 0.7**epoch, reached + 0.01, reached, epoch_seconds, validation_loss=2.3 * 0.7**epoch + 0.02, validation_accuracy=validation * (1 - 0.5 ** (epoch + 2))))  # fmt: skip
    ended = began + timedelta(seconds=epoch_seconds * spec.epochs)
    if i % 20 in (3, 13):
        fail_job(session, job.id, worker, "training diverged: the loss became NaN at step 200", now=ended)
    elif i % 20 == 7:
        mark_cancelled(session, job.id, worker, now=ended)
    else:
        result = _result(spec, params, accuracy, validation, epoch_seconds)
        finish_job(session, job.id, worker, result, now=ended)
    return job.id


def _result(
    spec: TrainSpec, params, accuracy: float, validation: float, epoch_seconds: float
) -> SimpleNamespace:
    right = round(1000 * accuracy)
    confusion = [[right if i == j else (1000 - right) // 9 for j in range(10)] for i in range(10)]
    return SimpleNamespace(
        weights=dump_weights(spec, params[tuple(spec.hidden_layers)]),
        train_accuracy=min(1.0, accuracy + 0.01),
        test_accuracy=accuracy,
        validation_accuracy=validation,
        confusion_train=confusion,
        confusion_test=confusion,
        best_epoch=spec.epochs,
        stopped_epoch=spec.epochs,
        predictions={},  # as a model stored before predictions were: the API computes them when asked
        seconds=epoch_seconds * spec.epochs,
    )
