"""How a job's weights are measured, always through the canonical weights exactly as the API serves them.

After every epoch: the validation images in full (early stopping and every ranking read them), the
trained images and the test split on fixed samples of SAMPLE_SIZE. After the last epoch: every image,
and each image's predicted class and its probability, stored with the model (``encode_predictions``)
so that the API never recomputes a split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .data import Dataset, Indices, Labels, Split
from .metrics import accuracy, confusion_matrix
from .npz import read_npz, write_npz
from .numpy_mlp import Params, softmax
from .spec import TrainSpec
from .splits import training_indices, validation_indices
from .weights import Weights, predict_logits

SAMPLE_SIZE = 2_000  # trained and test images an intermediate epoch is measured on
SAMPLE_SEED = 0
PREDICTIONS_FORMAT = "mlplab-predictions/1"


class PredictionsError(ValueError):
    """Bytes that are not stored predictions."""


@dataclass(frozen=True)
class Scores:
    """How weights classify one set of images."""

    accuracy: float
    loss: float  # mean cross-entropy of the true class
    confusion: NDArray[np.int64]


class NonFiniteOutputs(ValueError):
    """Weights, finite themselves, whose outputs overflow: NaN probabilities, which argmax reads as class 0."""


def score(logits: NDArray[np.float32], labels: Labels) -> Scores:
    if not np.isfinite(logits).all():
        raise NonFiniteOutputs("its outputs are no longer finite (its activations overflow)")
    predicted = softmax(logits).argmax(axis=1)  # as the API predicts: from the probabilities
    # log-softmax in float64, as training's loss: -log of a float32 probability capped a confident
    # mistake at 87 nats (the true class's probability rounds to 0), and the mean with it
    shifted = logits.astype(np.float64)
    shifted -= shifted.max(axis=1, keepdims=True)
    true_class = shifted[np.arange(len(labels)), labels] - np.log(np.exp(shifted).sum(axis=1))
    return Scores(
        accuracy=accuracy(labels, predicted),
        loss=float(-true_class.mean()) if len(labels) else 0.0,
        confusion=confusion_matrix(labels, predicted),
    )


def _subset(split: Split, indices: Indices) -> Split:
    return Split(split.images[indices], split.labels[indices])


def _sample(n: int, size: int) -> Indices:
    """A fixed sample of `size` positions out of n, sorted; all n when there are no more."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(SAMPLE_SEED).choice(n, size, replace=False))


@dataclass(frozen=True)
class EvalSets:
    """A job's images: what it trains on, validates on, and the fixed samples of its intermediate epochs."""

    data: Dataset
    trained_indices: Indices  # rows of the training split, not a copy of them: the networks train on them
    validation_indices: Indices  # rows of the training split; empty with validation_size 0
    validation: Split | None
    trained_sample: Split
    test_sample: Split

    @classmethod
    def of(cls, spec: TrainSpec, data: Dataset, sample_size: int = SAMPLE_SIZE) -> EvalSets:
        """Raises ValueError when validation_size leaves nothing to train on."""
        train = data.split("train")
        held = validation_indices(train.labels, spec.validation_size)
        trained_indices = training_indices(train.labels, spec, held)
        return cls(
            data=data,
            trained_indices=trained_indices,
            validation_indices=held,
            validation=_subset(train, held) if len(held) else None,
            trained_sample=_subset(train, trained_indices[_sample(len(trained_indices), sample_size)]),
            test_sample=_subset(data.split("test"), _sample(len(data.test_labels), sample_size)),
        )


# Called between chunks of an evaluation: a training job's stop check, which raises to stop it.
Between = Callable[[], None] | None


def _on(weights: Weights, split: Split, between: Between = None) -> Scores:
    return score(predict_logits(weights, split.images, between=between), split.labels)


def validation_scores(
    params: Params, spec: TrainSpec, sets: EvalSets, between: Between = None
) -> Scores | None:
    """Every validation image, every epoch: early stopping and the rankings read these."""
    return None if sets.validation is None else _on(Weights(spec, params), sets.validation, between)


def sample_scores(params: Params, spec: TrainSpec, sets: EvalSets) -> tuple[Scores, Scores]:
    """An intermediate epoch's trained and test figures, on their fixed samples."""
    weights = Weights(spec, params)
    return _on(weights, sets.trained_sample), _on(weights, sets.test_sample)


@dataclass(frozen=True)
class FullEvaluation:
    """Weights measured on every trained, validation and test image, and the predictions the API will serve."""

    trained: Scores
    validation: Scores | None  # None without a validation split
    test: Scores
    predictions: dict[str, bytes]  # "train" (the whole split, by index) and "test": encode_predictions


def full_evaluation(
    params: Params, spec: TrainSpec, sets: EvalSets, between: Between = None
) -> FullEvaluation:
    """One pass over both splits, kept as each image's prediction; the trained and validation images'
    figures read from it."""
    weights = Weights(spec, params)
    train, test = sets.data.split("train"), sets.data.split("test")
    train_logits = predict_logits(weights, train.images, between=between)
    test_logits = predict_logits(weights, test.images, between=between)
    held = sets.validation_indices
    return FullEvaluation(
        score(train_logits[sets.trained_indices], train.labels[sets.trained_indices]),
        score(train_logits[held], train.labels[held]) if len(held) else None,
        score(test_logits, test.labels),
        {
            "train": encode_predictions(softmax(train_logits)),
            "test": encode_predictions(softmax(test_logits)),
        },
    )


# --- stored predictions ------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitPredictions:
    """Each image's predicted class and the probability the model gives it, in the split's order."""

    predicted: NDArray[np.uint8]
    probability: NDArray[np.float32]


def predictions_of(proba: NDArray[np.float32]) -> SplitPredictions:
    predicted = proba.argmax(axis=1)
    return SplitPredictions(predicted.astype(np.uint8), proba[np.arange(len(proba)), predicted])


def encode_predictions(proba: NDArray[np.float32]) -> bytes:
    """An .npz (no pickles): format, `predicted` uint8 (n,), `probability` float32 (n,)."""
    p = predictions_of(proba)
    return write_npz(PREDICTIONS_FORMAT, {"predicted": p.predicted, "probability": p.probability})


def decode_predictions(blob: bytes) -> SplitPredictions:
    with read_npz(blob, PREDICTIONS_FORMAT, PredictionsError, "predictions") as npz:
        return SplitPredictions(npz["predicted"], npz["probability"])
