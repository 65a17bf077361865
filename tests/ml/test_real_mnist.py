"""On the real MNIST files: the networks learn, and zero init never breaks symmetry.

These need MLPLAB_DATA_DIR (default ../shared/data). When the files are missing they fail:
CI must never pass without having trained on the real data.
"""

from __future__ import annotations

import numpy as np
import pytest

from service.ml.spec import TrainSpec
from service.ml.train import train
from service.ml.weights import load_weights


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_one_epoch_of_relu_adam_reaches_96_percent(backend, mnist):
    spec = TrainSpec(backend=backend, activation="relu", optimizer="adam", learning_rate=0.001, epochs=1)
    result = train(spec, mnist, device="cpu")
    assert result.test_accuracy >= 0.96, result.test_accuracy
    assert sum(map(sum, result.confusion_train)) == 60_000 - spec.validation_size  # the images trained on


@pytest.mark.slow  # training on the real MNIST
@pytest.mark.realdata
def test_zero_init_keeps_hidden_units_identical(mnist):
    spec = TrainSpec(
        backend="numpy", init="zeros", activation="sigmoid", learning_rate=0.1, epochs=1, train_limit=10_000
    )
    result = train(spec, mnist)
    weights = load_weights(result.weights)
    for W, b in weights.params[:-1]:
        # Every hidden unit (a column of W) equals the first one, up to float32 rounding: BLAS
        # may sum different columns in a different order. A broken symmetry would differ by
        # the size of the weights themselves.
        scale = max(np.abs(W).max(), np.abs(b).max())
        assert np.abs(W - W[:, :1]).max() <= 1e-5 * scale
        assert np.abs(b - b[0]).max() <= 1e-5 * scale
    assert result.test_accuracy <= 0.12
