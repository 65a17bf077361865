"""The NumPy network against oracles: finite differences, and its own determinism."""

from __future__ import annotations

import numpy as np
import pytest

from service.ml.data import Split
from service.ml.numpy_mlp import NumpyMLP, backward, cross_entropy, forward, init_params, objective
from service.ml.spec import TrainSpec


def _float64(params):
    return [(W.astype(np.float64), b.astype(np.float64)) for W, b in params]


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("l2", [0.0, 0.1])
def test_gradient_matches_finite_differences(activation, l2):
    spec = TrainSpec(
        backend="numpy", hidden_layers=[7, 5], activation=activation, init="glorot", l2=l2, seed=3
    )
    rng = np.random.default_rng(1)
    params = _float64(init_params(spec))
    # Non-zero biases, so their gradients are exercised away from the symmetric start.
    params = [(W, rng.standard_normal(b.shape) * 0.1) for W, b in params]
    X = rng.random((6, 784))
    y = rng.integers(0, 10, 6)

    a = forward(params, X, activation)
    _, p = cross_entropy(a[-1], y)
    grads = backward(params, a, p, y, activation, l2)

    eps = 1e-6
    analytic, numeric = [], []
    for (W, b), (dW, db) in zip(params, grads, strict=True):
        for theta, g in ((W, dW), (b, db)):
            flat, gflat = theta.reshape(-1), g.reshape(-1)
            picks = rng.choice(flat.size, size=min(flat.size, 60), replace=False)
            for k in picks:
                old = flat[k]
                flat[k] = old + eps
                up = objective(params, X, y, activation, l2)
                flat[k] = old - eps
                down = objective(params, X, y, activation, l2)
                flat[k] = old
                numeric.append((up - down) / (2 * eps))
                analytic.append(gflat[k])
    analytic, numeric = np.array(analytic), np.array(numeric)
    relative_error = np.linalg.norm(analytic - numeric) / (np.linalg.norm(analytic) + np.linalg.norm(numeric))
    assert relative_error < 1e-6, relative_error


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0]], dtype=np.float32)
    loss, p = cross_entropy(logits, np.array([2]))
    assert np.isfinite(loss) and loss == pytest.approx(2000.0, rel=1e-3)
    assert np.all(np.isfinite(p))


def test_biases_of_every_layer_are_trained():
    """The notebook dropped the biases after the first layer; every layer's must move."""
    spec = TrainSpec(backend="numpy", hidden_layers=[8, 6], activation="tanh", learning_rate=0.5)
    rng = np.random.default_rng(0)
    net = NumpyMLP(spec, Split(rng.random((32, 784)).astype(np.float32), rng.integers(0, 10, 32)))
    net.step(np.arange(32), 0.5)
    assert all(np.abs(b).max() > 0 for _, b in net.params)


def test_weights_stay_float32():
    spec = TrainSpec(backend="numpy", hidden_layers=[8], optimizer="adam", learning_rate=0.01, l2=0.01)
    rng = np.random.default_rng(0)
    net = NumpyMLP(spec, Split(rng.random((16, 784)).astype(np.float32), rng.integers(0, 10, 16)))
    net.step(np.arange(16), 0.01)
    assert all(W.dtype == np.float32 and b.dtype == np.float32 for W, b in net.params)


@pytest.mark.parametrize(
    "init,check",
    [
        ("zeros", lambda W, fi, fo: np.all(W == 0)),
        ("random", lambda W, fi, fo: abs(W.std() / 1.0 - 1) < 0.1),
        (
            "glorot",
            lambda W, fi, fo: (
                np.abs(W).max() <= np.sqrt(6 / (fi + fo)) and abs(W.std() / np.sqrt(2 / (fi + fo)) - 1) < 0.1
            ),
        ),
        ("he", lambda W, fi, fo: abs(W.std() / np.sqrt(2 / fi) - 1) < 0.1),
    ],
)
def test_initialisations_follow_their_definitions(init, check):
    spec = TrainSpec(backend="numpy", init=init)
    for (W, b), fi, fo in zip(init_params(spec), spec.layer_sizes[:-1], spec.layer_sizes[1:], strict=True):
        assert W.shape == (fi, fo) and W.dtype == np.float32
        assert check(W, fi, fo)
        assert np.all(b == 0)
