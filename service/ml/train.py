"""train(spec, data, callbacks) -> TrainResult, whichever the backend: epochs, evaluation, checkpoints."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Unpack

import numpy as np
from numpy.typing import NDArray

from .data import Dataset, Indices, Split, epoch_batches, epoch_steps
from .evaluation import EvalSets, NonFiniteOutputs, Scores, full_evaluation, sample_scores, validation_scores
from .network import BackendOptions, Network, make_network
from .npz import read_npz, write_npz
from .numpy_mlp import Params
from .spec import EarlyStopping, TrainSpec
from .weights import dump_weights

log = logging.getLogger("mlplab.train")
DIVERGED = "training diverged"  # how a diverged job's error begins: a sweep counts its failures by it


@dataclass(frozen=True)
class StepProgress:
    epoch: int  # 1-based
    step: int  # global step, 1-based
    steps: int  # total steps of the job
    loss: float  # mean cross-entropy over the images trained since the step reported before (in this epoch)
    every: int  # steps between two reported losses (Plan.log_every)


@dataclass(frozen=True)
class EpochEnd:
    epoch: int
    loss: float  # mean cross-entropy over the epoch's images
    train_accuracy: float  # on a fixed sample of the trained images (evaluation.py); the last epoch's on all
    test_accuracy: float  # likewise on the test split
    seconds: float  # training time of the epoch, evaluation and progress reports excluded
    validation_loss: float | None = None  # on every validation image; None with validation_size 0
    validation_accuracy: float | None = None
    sampled: bool | None = None  # train and test on the samples (None: not said, as before it was kept)


@dataclass(frozen=True)
class Checkpoint:
    epoch: int  # epochs completed
    state: bytes  # train()'s own: the backend's parameters and optimizer state, and early stopping's
    final: bool = False  # the last train() offers: after the second-to-last epoch


@dataclass
class TrainResult:
    weights: bytes  # the canonical .npz (see weights.py), of epoch best_epoch
    train_accuracy: float
    test_accuracy: float
    validation_accuracy: float | None  # None with validation_size 0
    confusion_train: list[list[int]]
    confusion_test: list[list[int]]
    best_epoch: int  # the epoch whose weights these are: the lowest validation loss with early stopping, else the last
    stopped_epoch: int  # the last epoch trained: spec.epochs unless early stopping ended it sooner
    predictions: dict[str, bytes]  # "train", "test": evaluation.encode_predictions, one row per image
    epochs: list[EpochEnd] = field(default_factory=list)
    seconds: float = 0.0


class TrainingError(Exception):
    """Training cannot go on: a diverged loss, non-finite weights."""


class TrainingCancelled(Exception):
    """should_stop() returned True."""


Progress = StepProgress | EpochEnd


@dataclass
class Callbacks:
    """What train() tells its caller as it goes, and asks it; each is optional."""

    on_progress: Callable[[Progress], None] | None = None  # every log_every steps and at each epoch's end
    should_stop: Callable[[], bool] | None = None  # after every step and each epoch: keep it cheap
    on_checkpoint: Callable[[Checkpoint], None] | None = None  # after each epoch but the last: the caller
    # decides which to keep (every one, or one every MLPLAB_CHECKPOINT_SECONDS and the last before the end)
    reporting: float = field(default=0.0, init=False)  # seconds spent in on_progress, all told

    def progress(self, event: Progress) -> None:
        if self.on_progress is not None:
            started = time.perf_counter()
            self.on_progress(event)
            self.reporting += time.perf_counter() - started

    def stop(self) -> bool:
        return self.should_stop is not None and self.should_stop()

    def stop_check(self, where: str) -> Callable[[], None]:
        """A check that raises TrainingCancelled (saying `where`) once should_stop() says so."""

        def check() -> None:
            if self.stop():
                raise TrainingCancelled(f"stopped {where}")

        return check


@dataclass(frozen=True)
class Plan:
    """The job's steps: the training split, its batches per epoch, the learning rate at each step."""

    spec: TrainSpec
    examples: Split  # the dataset's training split
    rows: Indices  # its rows the job trains on (EvalSets.trained_indices): example i is row rows[i]
    max_losses: int | None = None  # most losses reported over the whole job; None: every log_every steps

    @property
    def steps_per_epoch(self) -> int:
        return epoch_steps(len(self.rows), self.spec.batch_size)

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
        # N(0, 1) weights whatever a layer's width: its outputs grow with the square root of its inputs
        inputs = self.examples.images.shape[1]
        init = (
            ", or init he or glorot: random draws every weight from N(0, 1) whatever a layer's width; he "
            f"draws the first layer's {math.sqrt(inputs / 2):.0f} times smaller for its {inputs} inputs"
            if self.spec.init == "random"
            else ""
        )
        return TrainingError(
            f"{DIVERGED}: {what} at epoch {epoch}, step {step} "
            f"(learning rate {self.learning_rate(step):g}); "
            f"try a smaller learning_rate than {self.spec.learning_rate:g}{init}"
        )


@dataclass
class Kept:
    """The weights the model will keep: with early stopping those of the lowest validation loss so far
    (and how many epochs have passed since), otherwise the latest epoch's."""

    rule: EarlyStopping | None
    epoch: int = 0
    params: Params | None = None
    validation_loss: float = math.inf
    validation_accuracy: float | None = None
    waited: int = 0  # epochs since the best one

    def update(self, epoch: int, params: Params, validation: Scores | None) -> bool:
        """Take an epoch's weights and validation scores; True when early stopping's patience has run out."""
        if self.rule is None or validation is None:
            self.epoch, self.params = epoch, params
            self.validation_accuracy = None if validation is None else validation.accuracy
            return False
        if validation.loss < self.validation_loss - self.rule.min_delta:
            self.epoch, self.params, self.waited = epoch, params, 0
            self.validation_loss, self.validation_accuracy = validation.loss, validation.accuracy
            return False
        self.waited += 1
        return self.waited >= self.rule.patience


def loss_interval(spec: TrainSpec, total_steps: int, max_losses: int | None) -> int:
    """spec.log_every, or the smallest interval at which a job of `total_steps` steps reports at most
    `max_losses` losses: one every interval's steps, plus the first step and each epoch's last."""
    if max_losses is None:
        return spec.log_every
    # the first step's report fits too: the interval's reports reach max_losses - epochs only when the
    # last step is one of them, an epoch's end reported once
    return max(spec.log_every, math.ceil(total_steps / max(max_losses - spec.epochs, 1)))


def eval_sets(spec: TrainSpec, data: Dataset) -> EvalSets:
    """The job's training, validation and test images; TrainingError when the spec does not fit the data."""
    try:
        return EvalSets.of(spec, data)
    except ValueError as exc:  # a validation_size the dataset cannot spare
        raise TrainingError(str(exc)) from None


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
    Losses are reported at the first step, every Plan.log_every steps (at most `max_losses`) and at each
    epoch's last step.

    With resume, training continues after the checkpoint's epoch: the batches of an epoch depend only
    on (seed, epoch), so a resumed NumPy run ends bit-identical to an uninterrupted one.
    Raises TrainingError when training diverges or the spec does not fit the data, TrainingCancelled
    when should_stop() says so.
    """
    calls = callbacks or Callbacks()
    sets = eval_sets(spec, data)
    plan = Plan(spec, data.split("train"), sets.trained_indices, max_losses)
    net, kept, first_epoch = start_network(plan, resume, backend)
    history: list[EpochEnd] = []
    for epoch in range(first_epoch, spec.epochs + 1):
        started, reported = time.perf_counter(), calls.reporting
        loss = run_epoch(net, plan, epoch, calls)
        # a progress write that waited for the database's lock paused training: not training time
        seconds = time.perf_counter() - started - (calls.reporting - reported)
        params = checked_weights(net, plan, epoch)
        between = calls.stop_check(f"while evaluating epoch {epoch}")
        with outputs_checked(plan, epoch):
            # The last epoch is measured on every image (and gives the model's figures when its weights
            # are kept); the others on the validation images and fixed samples, so that evaluating does
            # not cost a job its time.
            final = full_evaluation(params, spec, sets, between) if epoch == spec.epochs else None
            validation = final.validation if final else validation_scores(params, spec, sets, between)
            last = kept.update(epoch, params, validation) or final is not None
            if last and final is None:  # early stopping ends the job here
                final = full_evaluation(params, spec, sets, between)
            trained, test = (final.trained, final.test) if final else sample_scores(params, spec, sets)
        end = EpochEnd(
            epoch,
            loss,
            trained.accuracy,
            test.accuracy,
            seconds,
            *_loss_accuracy(validation),
            sampled=final is None,
        )
        history.append(end)
        calls.progress(end)
        if last:
            break
        if calls.on_checkpoint is not None:
            calls.on_checkpoint(Checkpoint(epoch, pack_state(net, kept), final=epoch == spec.epochs - 1))
        if calls.stop():
            raise TrainingCancelled(f"stopped after epoch {epoch}")
    assert final is not None and kept.params is not None  # the loop ends on a last epoch
    if kept.epoch != history[-1].epoch:  # early stopping: back to the best epoch's weights
        with outputs_checked(plan, kept.epoch):  # checked on validation only until now
            final = full_evaluation(
                kept.params, spec, sets, calls.stop_check("while evaluating the best epoch")
            )
    return TrainResult(
        weights=dump_weights(spec, kept.params),
        train_accuracy=final.trained.accuracy,
        test_accuracy=final.test.accuracy,
        validation_accuracy=kept.validation_accuracy,
        confusion_train=final.trained.confusion.tolist(),
        confusion_test=final.test.confusion.tolist(),
        best_epoch=kept.epoch,
        stopped_epoch=history[-1].epoch,
        predictions=final.predictions,
        epochs=history,
        seconds=sum(e.seconds for e in history),
    )


def _loss_accuracy(scores: Scores | None) -> tuple[float | None, float | None]:
    return (None, None) if scores is None else (scores.loss, scores.accuracy)


# --- checkpoints: the backend's state and early stopping's, in one .npz -------------------------

CHECKPOINT_FORMAT = "mlplab-checkpoint/1"


def pack_state(net: Network, kept: Kept) -> bytes:
    """The network's state, and with early stopping the best weights so far and how long ago they were."""
    arrays: dict[str, NDArray[Any]] = {"network": np.frombuffer(net.state(), dtype=np.uint8)}
    if kept.rule is not None and kept.params is not None:
        arrays |= {
            "kept": np.array([kept.epoch, kept.waited]),
            "validation": np.array([kept.validation_loss, kept.validation_accuracy]),
        }
        for i, (W, b) in enumerate(kept.params, start=1):
            arrays[f"W{i}"], arrays[f"b{i}"] = W, b
    return write_npz(CHECKPOINT_FORMAT, arrays)


def unpack_state(blob: bytes, net: Network, kept: Kept) -> None:
    """Load pack_state's bytes into net and kept; raises ValueError on bytes it did not write."""
    with read_npz(blob, CHECKPOINT_FORMAT, ValueError, "checkpoint") as npz:
        net.load_state(npz["network"].tobytes())
        if kept.rule is not None and "kept" in npz.files:
            kept.epoch, kept.waited = (int(x) for x in npz["kept"])
            kept.validation_loss, kept.validation_accuracy = (float(x) for x in npz["validation"])
            n_layers = sum(name.startswith("W") for name in npz.files)
            kept.params = [(npz[f"W{i}"], npz[f"b{i}"]) for i in range(1, n_layers + 1)]


def start_network(
    plan: Plan, resume: Checkpoint | None, backend: BackendOptions
) -> tuple[Network, Kept, int]:
    """A network, what it keeps, and the first epoch to train: resumed from the checkpoint when it loads."""
    net, kept = make_network(plan.spec, plan.examples, plan.rows, **backend), Kept(plan.spec.early_stopping)
    if resume is None:
        return net, kept, 1
    try:
        if not 1 <= resume.epoch < plan.spec.epochs:
            raise ValueError(f"the job has {plan.spec.epochs} epochs")
        unpack_state(resume.state, net, kept)
        return net, kept, resume.epoch + 1
    except Exception as exc:
        # A checkpoint another version wrote (or a damaged one): losing its epochs beats failing
        # the job. A half-loaded network is discarded, not trained on.
        log.warning(
            "the checkpoint after epoch %d cannot be loaded (%s: %s): training from epoch 1",
            resume.epoch,
            type(exc).__name__,
            exc,
        )
        return make_network(plan.spec, plan.examples, plan.rows, **backend), Kept(plan.spec.early_stopping), 1


def run_epoch(net: Network, plan: Plan, epoch: int, calls: Callbacks) -> float:
    """Train one epoch, its batches in (seed, epoch)'s order; returns the mean loss per image (a batch
    weighs by its images).

    Raises TrainingError on a non-finite loss, TrainingCancelled when should_stop() says so
    (checked after every step: a cancel or SIGTERM is honoured within one step's time).
    """
    spec, every = plan.spec, plan.log_every
    batches = epoch_batches(len(plan.rows), spec.batch_size, spec.seed, epoch)
    loss_sum = 0.0
    since_sum, since_images = 0.0, 0  # since the step reported before
    for i, idx in enumerate(batches):
        step = (epoch - 1) * plan.steps_per_epoch + i + 1
        loss = net.step(idx, plan.learning_rate(step))
        if not math.isfinite(loss):
            if since_images:  # the steps before, on the curve: how the loss grew is what shows why
                calls.progress(
                    StepProgress(epoch, step - 1, plan.total_steps, since_sum / since_images, every)
                )
            raise plan.diverged(epoch, step, f"the loss is {loss}")
        loss_sum += loss * len(idx)
        since_sum, since_images = since_sum + loss * len(idx), since_images + len(idx)
        # the first step (where the curve starts: near ln 10 untrained), every log_every steps, and each
        # epoch's last step so a short job still has a curve: the mean since the last report
        if step == 1 or step % every == 0 or i == len(batches) - 1:
            calls.progress(StepProgress(epoch, step, plan.total_steps, since_sum / since_images, every))
            since_sum, since_images = 0.0, 0
        if calls.stop():
            raise TrainingCancelled(f"stopped at epoch {epoch}, step {step}")
    return loss_sum / len(plan.rows)


@contextmanager
def outputs_checked(plan: Plan, epoch: int) -> Iterator[None]:
    """Evaluations whose outputs overflow (finite weights, NaN probabilities) fail the job as diverged."""
    try:
        yield
    except NonFiniteOutputs as exc:
        raise plan.diverged(epoch, epoch * plan.steps_per_epoch, str(exc)) from exc


def checked_weights(net: Network, plan: Plan, epoch: int) -> Params:
    """The weights after `epoch`, checked finite (TrainingError otherwise)."""
    params = net.export()
    if not all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in params):
        raise plan.diverged(epoch, epoch * plan.steps_per_epoch, "the weights are no longer finite")
    return params
