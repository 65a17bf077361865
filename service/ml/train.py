"""train(spec, data, callbacks) -> TrainResult, whichever the backend: epochs, evaluation, checkpoints."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Unpack

import numpy as np
from numpy.typing import NDArray

from .data import Dataset, Split, epoch_batches
from .metrics import accuracy, confusion_matrix
from .network import BackendOptions, Network, make_network
from .numpy_mlp import Params
from .spec import TrainSpec
from .weights import Weights, dump_weights, predict_proba

log = logging.getLogger("mlplab.train")


@dataclass(frozen=True)
class StepProgress:
    epoch: int  # 1-based
    step: int  # global step, 1-based
    steps: int  # total steps of the job
    loss: float  # the batch's cross-entropy at this step
    every: int  # steps between two reported losses (Plan.log_every)


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


@dataclass(frozen=True)
class Callbacks:
    """What train() tells its caller as it goes, and asks it; each is optional."""

    on_progress: Callable[[Progress], None] | None = None  # every log_every steps and at each epoch's end
    should_stop: Callable[[], bool] | None = None  # after every step and each epoch: keep it cheap
    on_checkpoint: Callable[[Checkpoint], None] | None = None  # after each epoch but the last

    def progress(self, event: Progress) -> None:
        if self.on_progress is not None:
            self.on_progress(event)

    def stop(self) -> bool:
        return self.should_stop is not None and self.should_stop()


@dataclass(frozen=True)
class Plan:
    """The job's steps: the training split, its batches per epoch, the learning rate at each step."""

    spec: TrainSpec
    examples: Split  # the training split, cut to spec.train_limit
    max_losses: int | None = None  # most losses reported over the whole job; None: every log_every steps

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.examples.labels) / self.spec.batch_size)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.spec.epochs

    @property
    def log_every(self) -> int:
        """Steps between reported losses: spec.log_every, widened when it would report more than max_losses."""
        return loss_interval(self.spec, self.total_steps, self.max_losses)

    def learning_rate(self, step: int) -> float:
        """The spec's learning rate at global step `step` (1-based), after its schedule."""
        if self.spec.lr_schedule == "cosine":
            return self.spec.learning_rate * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / self.total_steps))
        return self.spec.learning_rate

    def diverged(self, epoch: int, step: int, what: str) -> TrainingError:
        return TrainingError(
            f"training diverged: {what} at epoch {epoch}, step {step} "
            f"(learning rate {self.learning_rate(step):g}); "
            f"try a smaller learning_rate than {self.spec.learning_rate:g}"
        )


@dataclass(frozen=True)
class Evaluation:
    """One epoch's weights and how they classify both splits (train: the examples trained on)."""

    params: Params
    train_accuracy: float
    test_accuracy: float
    confusion_train: NDArray[np.int64]
    confusion_test: NDArray[np.int64]


def loss_interval(spec: TrainSpec, total_steps: int, max_losses: int | None) -> int:
    """spec.log_every, or the smallest interval at which a job of `total_steps` steps reports at most
    `max_losses` losses: one every interval's steps, plus each epoch's last step."""
    if max_losses is None:
        return spec.log_every
    return max(spec.log_every, math.ceil(total_steps / max(max_losses - spec.epochs, 1)))


def evaluate(params: Params, spec: TrainSpec, split: Split) -> tuple[float, NDArray[np.int64]]:
    """Accuracy and confusion matrix of the canonical weights, exactly as the API will serve them."""
    predicted = predict_proba(Weights(spec, params), split.images).argmax(axis=1)
    return accuracy(split.labels, predicted), confusion_matrix(split.labels, predicted)


def train(
    spec: TrainSpec,
    data: Dataset,
    callbacks: Callbacks | None = None,
    *,
    resume: Checkpoint | None = None,
    max_losses: int | None = None,
    **backend: Unpack[BackendOptions],
) -> TrainResult:
    """Train spec's network on data, reporting through callbacks; backend options go to make_network.

    Losses are reported every spec.log_every steps and at each epoch's last step, at most
    `max_losses` of them over the job: a longer job reports them at a wider interval (loss_interval).

    With resume, training continues after the checkpoint's epoch: the batches of an epoch depend only
    on (seed, epoch), so a resumed NumPy run ends bit-identical to an uninterrupted one.
    Raises TrainingError when training diverges, TrainingCancelled when should_stop() says so.
    """
    calls = callbacks or Callbacks()
    plan = Plan(spec, training_examples(spec, data), max_losses)
    net, first_epoch = start_network(plan, resume, backend)
    history: list[EpochEnd] = []
    for epoch in range(first_epoch, spec.epochs + 1):
        started = time.perf_counter()
        loss = run_epoch(net, plan, epoch, calls)
        seconds = time.perf_counter() - started
        evaluation = evaluate_epoch(net, plan, epoch, data.split("test"))
        end = EpochEnd(epoch, loss, evaluation.train_accuracy, evaluation.test_accuracy, seconds)
        history.append(end)
        calls.progress(end)
        if epoch < spec.epochs:
            if calls.on_checkpoint is not None:
                calls.on_checkpoint(Checkpoint(epoch, net.state()))
            if calls.stop():
                raise TrainingCancelled(f"stopped after epoch {epoch}")

    # The last epoch's evaluation is the model's: checkpoints stop before it, so it always ran.
    return TrainResult(
        weights=dump_weights(spec, evaluation.params),
        train_accuracy=evaluation.train_accuracy,
        test_accuracy=evaluation.test_accuracy,
        confusion_train=evaluation.confusion_train.tolist(),
        confusion_test=evaluation.confusion_test.tolist(),
        epochs=history,
        seconds=sum(e.seconds for e in history),
    )


def training_examples(spec: TrainSpec, data: Dataset) -> Split:
    """The training split, or its first spec.train_limit examples."""
    images, labels = data.split("train")
    if spec.train_limit is not None:
        images, labels = images[: spec.train_limit], labels[: spec.train_limit]
    return Split(images, labels)


def start_network(plan: Plan, resume: Checkpoint | None, backend: BackendOptions) -> tuple[Network, int]:
    """A network and the first epoch to train: resumed from the checkpoint when it loads, else fresh."""
    net = make_network(plan.spec, plan.examples, **backend)
    if resume is None:
        return net, 1
    try:
        if not 1 <= resume.epoch < plan.spec.epochs:
            raise ValueError(f"the job has {plan.spec.epochs} epochs")
        net.load_state(resume.state)
        return net, resume.epoch + 1
    except Exception as exc:
        # A checkpoint another version wrote (or a damaged one): losing its epochs beats failing
        # the job. A half-loaded network is discarded, not trained on.
        log.warning(
            "the checkpoint after epoch %d cannot be loaded (%s: %s): training from epoch 1",
            resume.epoch,
            type(exc).__name__,
            exc,
        )
        return make_network(plan.spec, plan.examples, **backend), 1


def run_epoch(net: Network, plan: Plan, epoch: int, calls: Callbacks) -> float:
    """Train one epoch, its batches in (seed, epoch)'s order; returns the mean batch loss.

    Raises TrainingError on a non-finite loss, TrainingCancelled when should_stop() says so
    (checked after every step: a cancel or SIGTERM is honoured within one step's time).
    """
    spec, every = plan.spec, plan.log_every
    batches = epoch_batches(len(plan.examples.labels), spec.batch_size, spec.seed, epoch)
    loss_sum = 0.0
    for i, idx in enumerate(batches):
        step = (epoch - 1) * plan.steps_per_epoch + i + 1
        loss = net.step(idx, plan.learning_rate(step))
        if not math.isfinite(loss):
            raise plan.diverged(epoch, step, f"the loss is {loss}")
        loss_sum += loss
        # every log_every steps, and at each epoch's last step so a short job still has a curve
        if step % every == 0 or i == len(batches) - 1:
            calls.progress(StepProgress(epoch, step, plan.total_steps, loss, every))
        if calls.stop():
            raise TrainingCancelled(f"stopped at epoch {epoch}, step {step}")
    return loss_sum / len(batches)


def evaluate_epoch(net: Network, plan: Plan, epoch: int, test: Split) -> Evaluation:
    """The weights after `epoch`, checked finite (TrainingError), and their accuracy on both splits."""
    params = net.export()
    if not all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in params):
        raise plan.diverged(epoch, epoch * plan.steps_per_epoch, "the weights are no longer finite")
    train_accuracy, confusion_train = evaluate(params, plan.spec, plan.examples)
    test_accuracy, confusion_test = evaluate(params, plan.spec, test)
    return Evaluation(params, train_accuracy, test_accuracy, confusion_train, confusion_test)
