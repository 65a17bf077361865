"""The NumPy network against oracles: finite differences, and its own determinism."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from service.ml import blas
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


# The step as plain NumPy expressions, one new array each: the oracle for the buffered, compiled one.
_TEXTBOOK = {
    "sigmoid": (lambda z: (np.tanh(z * 0.5) + 1.0) * 0.5, lambda a: a * (1.0 - a)),
    "tanh": (np.tanh, lambda a: 1.0 - a * a),
    "relu": (lambda z: np.maximum(z, 0.0), lambda a: (a > 0).astype(a.dtype)),
}


def _textbook_step(params, state, X, y, spec, lr, t):
    f, f_prime = _TEXTBOOK[spec.activation]
    a = [X]
    for layer, (W, b) in enumerate(params):
        z = a[-1] @ W + b
        a.append(f(z) if layer < len(params) - 1 else z)
    shifted = a[-1] - a[-1].max(axis=1, keepdims=True)
    e = np.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    loss = float(-(shifted[np.arange(len(y)), y] - np.log(total[:, 0])).mean())
    scale = lr if spec.optimizer == "sgd" else 1.0
    delta = e / total
    delta[np.arange(len(y)), y] -= 1.0
    delta *= scale / len(y)
    grads = []
    for layer in range(len(params) - 1, -1, -1):
        W = params[layer][0]
        grads.insert(0, (a[layer].T @ delta + (scale * spec.l2) * W, delta.sum(axis=0)))
        delta = (delta @ W.T) * f_prime(a[layer])
    _textbook_update(params, grads, state, spec, lr, t)
    return loss, grads


def _textbook_update(params, grads, state, spec, lr, t):
    for (W, b), (dW, db), moments in zip(params, grads, state, strict=True):
        for theta, g, (m, v) in zip((W, b), (dW, db), moments, strict=True):
            if spec.optimizer == "sgd":
                theta -= g
            elif spec.optimizer == "momentum":
                m[...] = np.float32(spec.momentum) * m + g
                theta -= np.float32(lr) * m
            else:
                m[...] = np.float32(0.9) * m + np.float32(0.1) * g
                v[...] = np.float32(0.999) * v + np.float32(1 - 0.999) * (g * g)
                denom = np.sqrt(v) / np.float32(np.sqrt(1 - 0.999**t)) + np.float32(1e-8)
                theta -= np.float32(lr / (1 - 0.9**t)) * (m / denom)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("optimizer,l2", [("sgd", 0.0), ("sgd", 0.01), ("momentum", 0.01), ("adam", 0.01)])
@pytest.mark.parametrize("numpys_gemm", [True, False], ids=["gemm", "no-gemm"])
def test_step_matches_the_textbook_step(activation, optimizer, l2, numpys_gemm, monkeypatch):
    """Buffers, compiled kernels and plain SGD's step inside gemm change where the numbers go and the
    order of some float32 roundings, nothing more: losses and weights, step by step, within a few ulps
    of float32; also where NumPy's BLAS is another build, without that gemm."""
    if not numpys_gemm:
        monkeypatch.setattr(blas, "sgemm", None)
    spec = TrainSpec(
        backend="numpy", hidden_layers=[64, 32], activation=activation, optimizer=optimizer, l2=l2
    )
    rng = np.random.default_rng(0)
    split = Split(rng.random((100, 784), dtype=np.float32), rng.integers(0, 10, 100))
    net = NumpyMLP(spec, split)
    # Non-zero biases, so a bias added in the wrong place shows.
    for _, b in net.params:
        b[...] = rng.standard_normal(b.shape).astype(np.float32) * 0.1
    params = [(W.copy(), b.copy()) for W, b in net.params]
    state = [((np.zeros_like(W), np.zeros_like(W)), (np.zeros_like(b), np.zeros_like(b))) for W, b in params]
    order = rng.permutation(100)
    for t, idx in enumerate([order[:40], order[40:80], order[80:], order[:40], order[40:80]], 1):
        lr = 0.05
        before = (
            [(W.copy(), b.copy()) for W, b in params],
            [[(m.copy(), v.copy()) for m, v in x] for x in state],
        )
        expected, grads = _textbook_step(params, state, split.images[idx], split.labels[idx], spec, lr, t)
        assert net.step(idx, lr) == pytest.approx(expected, rel=1e-6)
        if optimizer != "sgd":
            # The update alone, from the step's own gradients: the same float32 operations, to the bit.
            params_before, state_before = before
            _textbook_update(params_before, net._workspaces[len(idx)].grads, state_before, spec, lr, t)
            moments = net.velocity or net.m1
            for layer, ((W, b), ((mW, vW), (mb, vb))) in enumerate(
                zip(params_before, state_before, strict=True)
            ):
                np.testing.assert_array_equal(net.params[layer][0], W)
                np.testing.assert_array_equal(net.params[layer][1], b)
                np.testing.assert_array_equal(moments[layer][0], mW)
                np.testing.assert_array_equal(moments[layer][1], mb)
                if net.m2:
                    np.testing.assert_array_equal(net.m2[layer][0], vW)
                    np.testing.assert_array_equal(net.m2[layer][1], vb)
        if optimizer == "adam":
            # Adam divides by |gradient|, so one ulp on a near-zero gradient moves its weight by up to
            # lr: the gradients are what to compare. (SGD and momentum move by the gradient itself.)
            for (dW, db), (dW_ref, db_ref) in zip(net._workspaces[len(idx)].grads, grads, strict=True):
                np.testing.assert_allclose(dW, dW_ref, rtol=0, atol=2e-6)
                np.testing.assert_allclose(db, db_ref, rtol=0, atol=2e-6)
        for (W, b), (W_ref, b_ref) in zip(net.params, params, strict=True):
            if optimizer != "adam":
                np.testing.assert_allclose(W, W_ref, rtol=0, atol=2e-6)
                np.testing.assert_allclose(b, b_ref, rtol=0, atol=2e-6)
            W_ref[...], b_ref[...] = W, b  # each step from the same state: rounding does not accumulate
        for layer, ((mW, vW), (mb, vb)) in enumerate(state):  # the optimizer's moments, likewise
            if net.velocity:
                mW[...], mb[...] = net.velocity[layer]
            if net.m1:
                (mW[...], mb[...]), (vW[...], vb[...]) = net.m1[layer], net.m2[layer]


def test_step_is_deterministic():
    """The same spec, data and batches give the same losses and weights, bit for bit."""
    spec = TrainSpec(backend="numpy", hidden_layers=[64, 32], activation="relu")
    rng = np.random.default_rng(0)
    split = Split(rng.random((100, 784), dtype=np.float32), rng.integers(0, 10, 100))
    nets = [NumpyMLP(spec, split), NumpyMLP(spec, split)]
    batches = [rng.permutation(100)[:32] for _ in range(20)]
    losses = [[net.step(idx, 0.1) for idx in batches] for net in nets]
    assert losses[0] == losses[1]
    for (W, b), (W2, b2) in zip(nets[0].params, nets[1].params, strict=True):
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, b2)


def test_step_rejects_a_label_beyond_the_output_layer():
    spec = TrainSpec(backend="numpy", hidden_layers=[8])
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 16)
    labels[3] = 10
    net = NumpyMLP(spec, Split(rng.random((16, 784), dtype=np.float32), labels))
    with pytest.raises(IndexError, match="label"):
        net.step(np.arange(16), 0.1)


def test_a_nan_in_the_network_makes_the_loss_nan():
    """A diverged network must report NaN (train() fails the job on it), not a finite loss."""
    spec = TrainSpec(backend="numpy", hidden_layers=[8], activation="relu")
    rng = np.random.default_rng(0)
    net = NumpyMLP(spec, Split(rng.random((16, 784), dtype=np.float32), rng.integers(0, 10, 16)))
    net.params[0][1][2] = np.nan  # one hidden unit's bias
    assert np.isnan(net.step(np.arange(16), 0.1))


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_step_allocates_no_large_array_after_warm_up(optimizer):
    """Every activation, gradient and optimizer temporary lives in buffers made by the first step of a size."""
    spec = TrainSpec(
        backend="numpy", activation="sigmoid", optimizer=optimizer, l2=0.01
    )  # 784-500-250-100-10
    rng = np.random.default_rng(0)
    net = NumpyMLP(spec, Split(rng.random((256, 784), dtype=np.float32), rng.integers(0, 10, 256)))
    batches = [rng.permutation(256)[:64] for _ in range(4)] + [np.arange(32)]
    for idx in batches:
        net.step(idx, 0.01)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for k in range(50):
            net.step(batches[k % len(batches)], 0.01)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # What remains is NumPy's ufunc buffer and the labels (tens of KB); one first-layer gradient is 1.5 MB.
    assert peak - start < 64 * 1024, peak - start
    assert current - start < 8 * 1024, current - start


def test_gemm_descends_to_the_bit_of_a_product_and_a_subtraction():
    """blas.descender (W -= A.T @ B in NumPy's own BLAS, in place) gives NumPy's numbers, or refuses."""
    assert blas.sgemm is not None  # NumPy's wheels bundle scipy-openblas: the fast path is the one tested
    rng = np.random.default_rng(0)
    for k, n_in, n_out in [(64, 784, 500), (17, 100, 10), (1, 3, 1)]:
        A = rng.standard_normal((k, n_in)).astype(np.float32)
        B = rng.standard_normal((k, n_out)).astype(np.float32)
        W = rng.standard_normal((n_in, n_out)).astype(np.float32)
        expected = W - A.T @ B
        descend = blas.descender(W, A, B)
        assert descend is not None
        descend()
        np.testing.assert_array_equal(W, expected)
    A, B = A.repeat(5, axis=1), B.repeat(4, axis=1)  # (1, 15) and (1, 4)
    W = rng.standard_normal((4, 15)).astype(np.float32).T  # not C-contiguous: refused, untouched
    before = W.copy()
    assert blas.descender(W, A, B) is None
    assert blas.descender(W.copy(), A.astype(np.float64), B) is None
    np.testing.assert_array_equal(W, before)


def test_an_epochs_smaller_batch_writes_into_the_larger_batchs_buffers():
    """A batch nearly as large as the others (an epoch's are one image apart) held a second set of every
    buffer (1.8 GB instead of 1.2 GB at the step limits), and trains exactly as on buffers of its own."""
    spec = TrainSpec(backend="numpy", activation="relu", optimizer="sgd", l2=0.01)  # 784-500-250-100-10
    rng = np.random.default_rng(0)
    split = Split(rng.random((1000, 784), dtype=np.float32), rng.integers(0, 10, 1000))
    batches = [np.arange(0, 600), np.arange(600, 1000)]
    net = NumpyMLP(spec, split)
    net.step(batches[0], 0.01)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        net.step(batches[1], 0.01)  # 400 rows: a workspace of its own was 2.5 MB of activations
        grown = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    assert grown < 1_000_000, grown
    alone = NumpyMLP(spec, split)  # the same steps, the last batch in buffers of its own
    alone.step(batches[0], 0.01)
    alone._workspaces.clear()
    alone.step(batches[1], 0.01)
    for (W, b), (W0, b0) in zip(net.params, alone.params, strict=True):
        assert np.array_equal(W, W0) and np.array_equal(b, b0)
