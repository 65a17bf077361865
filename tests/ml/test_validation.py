"""The validation split, early stopping, and the predictions a job stores, on the real MNIST."""

from __future__ import annotations

import numpy as np
import pytest

from service.ml.evaluation import EvalSets, decode_predictions
from service.ml.spec import TrainSpec
from service.ml.train import Callbacks, Checkpoint, EpochEnd, TrainingError, train
from service.ml.weights import load_weights

pytestmark = pytest.mark.realdata


def test_the_validation_images_are_the_same_for_every_seed_disjoint_and_stratified(mnist):
    labels = mnist.train_labels
    a = EvalSets.of(TrainSpec(backend="numpy", seed=0), mnist)
    b = EvalSets.of(TrainSpec(backend="torch", seed=7, train_limit=1000), mnist)
    assert np.array_equal(a.validation_indices, b.validation_indices)
    assert len(a.validation_indices) == 5000 == len(np.unique(a.validation_indices))
    assert np.intersect1d(a.validation_indices, a.trained_indices).size == 0
    assert np.intersect1d(b.validation_indices, b.trained_indices).size == 0
    assert len(a.trained_indices) == 55_000 and len(b.trained_indices) == 1000
    share = np.bincount(labels, minlength=10) / len(labels)
    held = np.bincount(labels[a.validation_indices], minlength=10) / 5000
    assert np.abs(held - share).max() <= 0.01
    # A smaller validation split takes a subset of a larger one's images.
    small = EvalSets.of(TrainSpec(backend="numpy", validation_size=500), mnist).validation_indices
    assert np.isin(small, a.validation_indices).all()


def test_validation_size_0_trains_on_the_first_train_limit_images_as_before(mnist):
    sets = EvalSets.of(TrainSpec(backend="numpy", validation_size=0, train_limit=3000), mnist)
    assert np.array_equal(sets.trained_indices, np.arange(3000))
    assert sets.validation is None and len(sets.validation_indices) == 0
    everything = EvalSets.of(TrainSpec(backend="numpy", validation_size=0), mnist)
    assert np.array_equal(everything.trained_indices, np.arange(60_000))


def test_a_validation_split_the_dataset_cannot_spare_fails_the_job_clearly(tiny_dataset):
    with pytest.raises(TrainingError, match="validation_size 5,000 leaves nothing to train on"):
        train(TrainSpec(backend="numpy", hidden_layers=[8], epochs=1), tiny_dataset)


# A job made to overfit: a wide network, Adam at a high rate, 500 images, judged on 1,000.
OVERFIT = {
    "backend": "numpy",
    "hidden_layers": [256],
    "activation": "relu",
    "init": "he",
    "optimizer": "adam",
    "learning_rate": 0.003,
    "batch_size": 50,
    "epochs": 40,
    "train_limit": 500,
    "validation_size": 1000,
    "early_stopping": {"patience": 3},
}


@pytest.fixture(scope="module")
def overfit(mnist):
    spec = TrainSpec.model_validate(OVERFIT)
    epochs: list[EpochEnd] = []
    checkpoints: list[Checkpoint] = []
    on_progress = lambda e: epochs.append(e) if isinstance(e, EpochEnd) else None  # noqa: E731
    result = train(spec, mnist, Callbacks(on_progress, on_checkpoint=checkpoints.append))
    return spec, result, epochs, checkpoints


def test_early_stopping_keeps_the_best_epochs_weights(overfit, mnist):
    spec, result, epochs, _ = overfit
    losses = [e.validation_loss for e in epochs]
    assert result.stopped_epoch == len(epochs) < spec.epochs  # it stopped, and its curves end there
    assert result.best_epoch == int(np.argmin(losses)) + 1 == result.stopped_epoch - 3
    best = epochs[result.best_epoch - 1]
    # The stored weights, measured afresh on the validation images: exactly the best epoch's figure.
    held = EvalSets.of(spec, mnist).validation
    predicted = load_weights(result.weights).predict_proba(held.images).argmax(axis=1)
    assert np.mean(predicted == held.labels) == best.validation_accuracy == result.validation_accuracy


def test_a_job_resumed_after_its_best_epoch_ends_on_the_same_weights(overfit, mnist):
    spec, result, _, checkpoints = overfit
    after_best = next(c for c in checkpoints if c.epoch == result.best_epoch + 1)
    resumed = train(spec, mnist, resume=after_best)
    assert (resumed.best_epoch, resumed.stopped_epoch) == (result.best_epoch, result.stopped_epoch)
    assert (
        resumed.weights == result.weights
    )  # NumPy: bit-identical, the best weights came from the checkpoint
    assert resumed.validation_accuracy == result.validation_accuracy


def test_a_job_stores_each_images_prediction_and_its_probability(overfit, mnist):
    spec, result, _, _ = overfit
    weights = load_weights(result.weights)
    for split in ("train", "test"):
        stored = decode_predictions(result.predictions[split])
        proba = weights.predict_proba(mnist.split(split).images)
        assert np.array_equal(stored.predicted, proba.argmax(axis=1))
        assert np.array_equal(stored.probability, proba.max(axis=1))
    test = decode_predictions(result.predictions["test"])
    assert np.mean(test.predicted == mnist.test_labels) == result.test_accuracy
    trained = EvalSets.of(spec, mnist).trained_indices
    train_predictions = decode_predictions(result.predictions["train"]).predicted
    assert np.mean(train_predictions[trained] == mnist.train_labels[trained]) == result.train_accuracy


def test_a_confident_mistakes_loss_is_not_capped():
    """-log of the true class's float32 probability capped a mistake 200 logits deep at 87 nats: a model
    of large logits showed a validation loss of 44.65 beside training's exact 49.87 on the same images."""
    import torch

    from service.ml.evaluation import score

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 50, (500, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 500)
    logits[0] = 0
    logits[0, labels[0]] = -200  # its true class 200 below the others
    exact = torch.nn.functional.cross_entropy(torch.from_numpy(logits).double(), torch.from_numpy(labels))
    assert score(logits, labels).loss == pytest.approx(exact.item(), rel=1e-9)
    assert score(logits[:1], labels[:1]).loss == pytest.approx(200 + np.log(9), rel=1e-6)
