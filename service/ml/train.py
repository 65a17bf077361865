"""train(spec, data, on_progress, should_stop) -> TrainResult, whichever the backend."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import Dataset, epoch_batches
from .metrics import accuracy, confusion_matrix
from .numpy_mlp import NumpyMLP, Params
from .spec import TrainSpec
from .weights import Weights, dump_weights, predict_proba

log = logging.getLogger("mlplab.train")


@dataclass(frozen=True)
class StepProgress:
    epoch: int  # 1-based
    step: int  # global step, 1-based
    steps: int  # total steps of the job
    loss: float  # the batch's cross-entropy at this step


@dataclass(frozen=True)
class EpochEnd:
    epoch: int
    loss: float  # mean batch cross-entropy over the epoch
    train_accuracy: float
    test_accuracy: float
    seconds: float  # training time of the epoch, evaluation excluded


@dataclass(frozen=True)
class Checkpoint:
    epoch: int  # epochs completed
    state: bytes  # backend-specific: parameters and optimizer state


@dataclass
class TrainResult:
    weights: bytes  # the canonical .npz (see weights.py)
    train_accuracy: float
    test_accuracy: float
    confusion_train: list[list[int]]
    confusion_test: list[list[int]]
    epochs: list[EpochEnd] = field(default_factory=list)
    seconds: float = 0.0


class TrainingError(Exception):
    """Training cannot go on: a diverged loss, non-finite weights."""


class TrainingCancelled(Exception):
    """should_stop() returned True."""


Progress = StepProgress | EpochEnd


def learning_rate(spec: TrainSpec, step: int, total_steps: int) -> float:
    if spec.lr_schedule == "cosine":
        return spec.learning_rate * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / total_steps))
    return spec.learning_rate


def evaluate(
    params: Params, spec: TrainSpec, images: np.ndarray, labels: np.ndarray
) -> tuple[float, np.ndarray]:
    """Accuracy and confusion matrix of the canonical weights, exactly as the API will serve them."""
    predicted = predict_proba(Weights(spec, params), images).argmax(axis=1)
    return accuracy(labels, predicted), confusion_matrix(labels, predicted)


def _diverged(spec: TrainSpec, epoch: int, step: int, lr: float, what: str) -> TrainingError:
    return TrainingError(
        f"training diverged: {what} at epoch {epoch}, step {step} (learning rate {lr:g}); "
        f"try a smaller learning_rate than {spec.learning_rate:g}"
    )


def train(
    spec: TrainSpec,
    data: Dataset,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    resume: Checkpoint | None = None,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
    device: str = "auto",
    threads: int | None = None,
    cpu_matmul: str = "onednn",
) -> TrainResult:
    """Train spec's network on data; on_progress every log_every steps and at each epoch's end
    (the epoch's last step's loss, then its EpochEnd).

    should_stop is checked after every step and at each epoch's end (TrainingCancelled); keep it cheap. With resume,
    training continues after the checkpoint's epoch: the batches of an epoch depend only on
    (seed, epoch), so a resumed NumPy run ends bit-identical to an uninterrupted one.
    """
    notify = on_progress or (lambda _: None)
    stop = should_stop or (lambda: False)
    X, y = data.train_images, data.train_labels
    if spec.train_limit is not None:
        X, y = X[: spec.train_limit], y[: spec.train_limit]
    n = len(X)
    steps_per_epoch = math.ceil(n / spec.batch_size)
    total_steps = steps_per_epoch * spec.epochs

    def build() -> tuple[Any, Callable[[np.ndarray, float], float]]:
        """A fresh network at its initial weights, and its step(batch indices, lr) -> loss."""
        if spec.backend == "torch":
            from .torch_mlp import TorchMLP  # the API imports this module's dataclasses, never torch

            net = TorchMLP(spec, device=device, threads=threads, cpu_matmul=cpu_matmul)
            X_dev, y_dev = net.to_device(X, y)
            return net, lambda idx, lr: net.step_indexed(X_dev, y_dev, idx, lr)
        numpy_net = NumpyMLP(spec)
        return numpy_net, lambda idx, lr: numpy_net.step(X[idx], y[idx], lr)

    net, step_fn = build()
    first_epoch = 1
    if resume is not None:
        try:
            net.load_state(resume.state)
            first_epoch = resume.epoch + 1
        except Exception as exc:
            # A checkpoint another version wrote (or a damaged one): losing its epochs beats failing
            # the job. A half-loaded network is discarded, not trained on.
            log.warning(
                "the checkpoint after epoch %d cannot be loaded (%s: %s): training from epoch 1",
                resume.epoch,
                type(exc).__name__,
                exc,
            )
            net, step_fn = build()

    history: list[EpochEnd] = []
    trained_seconds = 0.0
    for epoch in range(first_epoch, spec.epochs + 1):
        started = time.perf_counter()
        loss_sum = 0.0
        batches = epoch_batches(n, spec.batch_size, spec.seed, epoch)
        for i, idx in enumerate(batches):
            step = (epoch - 1) * steps_per_epoch + i + 1
            lr = learning_rate(spec, step, total_steps)
            loss = step_fn(idx, lr)
            if not math.isfinite(loss):
                raise _diverged(spec, epoch, step, lr, f"the loss is {loss}")
            loss_sum += loss
            # every log_every steps, and at each epoch's last step so a short job still has a curve
            if step % spec.log_every == 0 or i == len(batches) - 1:
                notify(StepProgress(epoch, step, total_steps, loss))
            if stop():  # every step: a cancel or SIGTERM is honoured within one step's time
                raise TrainingCancelled(f"stopped at epoch {epoch}, step {step}")
        seconds = time.perf_counter() - started
        trained_seconds += seconds

        params = net.export()
        if not all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in params):
            raise _diverged(spec, epoch, step, lr, "the weights are no longer finite")
        train_acc, confusion_train = evaluate(params, spec, X, y)
        test_acc, confusion_test = evaluate(params, spec, data.test_images, data.test_labels)
        end = EpochEnd(epoch, loss_sum / len(batches), train_acc, test_acc, seconds)
        history.append(end)
        notify(end)
        if on_checkpoint is not None and epoch < spec.epochs:
            on_checkpoint(Checkpoint(epoch, net.state()))
        if epoch < spec.epochs and stop():
            raise TrainingCancelled(f"stopped after epoch {epoch}")

    # The last epoch's evaluation is the model's: checkpoints stop before it, so it always ran.
    return TrainResult(
        weights=dump_weights(spec, params),
        train_accuracy=train_acc,
        test_accuracy=test_acc,
        confusion_train=confusion_train.tolist(),
        confusion_test=confusion_test.tolist(),
        epochs=history,
        seconds=trained_seconds,
    )
