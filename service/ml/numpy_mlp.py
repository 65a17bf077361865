"""The multilayer perceptron from scratch in NumPy.

Notation (one mini-batch of m examples, row-major: one example per row):

    a0 = X                                  (m, n0)
    zl = a(l-1) @ Wl + bl                   (m, nl)     Wl: (n(l-1), nl), bl: (nl,)
    al = f(zl)                              hidden layers
    p  = softmax(zL)                        output layer
    J  = -1/m sum log p[y]  (+ l2/2 sum ||Wl||^2 in the objective, not the reported loss)

Backward:

    deltaL = (p - Y) / m                    softmax and cross-entropy fused
    dWl    = a(l-1).T @ deltal  + l2 Wl     (n(l-1), nl)
    dbl    = sum_rows deltal                (nl,)
    delta(l-1) = (deltal @ Wl.T) * f'(a(l-1))

Everything is float32; with the same seed the weights are bit-identical.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .data import Indices, Labels, Split
from .spec import TrainSpec

Array = NDArray[np.float32]  # every matrix and vector of the network
Params = list[tuple[Array, Array]]  # [(W1, b1), ..., (WL, bL)]


# --- activations, each beside its derivative ------------------------------------------------
# The derivatives take the activation's output a = f(z), which the forward pass keeps anyway, so
# z is never stored: the activations overwrite it in place, with no new array per operation.


def sigmoid(z: Array) -> Array:
    # 0.5 (1 + tanh(z/2)) equals 1 / (1 + e^-z) but cannot overflow for large negative z.
    z *= 0.5
    np.tanh(z, out=z)
    z += 1.0
    z *= 0.5
    return z


def sigmoid_prime(a: Array) -> Array:
    return a * (1.0 - a)


def tanh(z: Array) -> Array:
    np.tanh(z, out=z)
    return z


def tanh_prime(a: Array) -> Array:
    return 1.0 - a * a


def relu(z: Array) -> Array:
    np.maximum(z, 0.0, out=z)
    return z


def relu_prime(a: Array) -> Array:
    return (a > 0).astype(a.dtype)


ACTIVATIONS: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "sigmoid": (sigmoid, sigmoid_prime),
    "tanh": (tanh, tanh_prime),
    "relu": (relu, relu_prime),
}


def softmax(z: Array) -> Array:
    e: Array = np.exp(z - z.max(axis=1, keepdims=True))  # shifting by the row max keeps exp finite
    e /= e.sum(axis=1, keepdims=True)
    return e


# --- initialisation --------------------------------------------------------------------------


def init_params(spec: TrainSpec, seed: int | None = None) -> Params:
    """Initial (W, b) for every layer; biases start at 0. Both backends start from these."""
    rng = np.random.default_rng(spec.seed if seed is None else seed)
    params: Params = []
    sizes = spec.layer_sizes
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        if spec.init == "zeros":
            W = np.zeros((fan_in, fan_out))
        elif spec.init == "random":  # the notebook's N(0, 1)
            W = rng.standard_normal((fan_in, fan_out))
        elif spec.init == "glorot":
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            W = rng.uniform(-limit, limit, (fan_in, fan_out))
        else:  # he: N(0, 2 / fan_in)
            W = rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / fan_in)
        params.append((W.astype(np.float32), np.zeros(fan_out, dtype=np.float32)))
    return params


# --- forward, loss, backward -----------------------------------------------------------------


def forward(params: Params, X: Array, activation: str) -> list[Array]:
    """Activations [a0 = X, a1, ..., a(L-1), zL]: the last entry is the logits."""
    f, _ = ACTIVATIONS[activation]
    a = [X]
    for W, b in params[:-1]:
        z = a[-1] @ W  # (m, nl)
        z += b
        a.append(f(z))  # (m, nl)
    W, b = params[-1]
    z = a[-1] @ W  # logits (m, classes)
    z += b
    a.append(z)
    return a


def forward_logits(params: Params, X: Array, activation: str) -> Array:
    return forward(params, X, activation)[-1]


def cross_entropy(logits: Array, y: Labels) -> tuple[float, Array]:
    """Mean cross-entropy of softmax(logits) against integer labels y, and the probabilities."""
    # One exp for both: p = e / sum(e) with e = exp(z - max), and in log-sum-exp form
    # log p[y] = (z[y] - max) - log sum(e), never log(0).
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    log_p_y = shifted[np.arange(len(y)), y] - np.log(total[:, 0])
    e /= total
    return float(-log_p_y.mean()), e


def backward(
    params: Params,
    a: list[Array],
    p: Array,
    y: Labels,
    activation: str,
    l2: float,
    scale: float = 1.0,
) -> Params:
    """Gradients (dW, db) of the objective for every layer, from the forward pass's activations.

    Every gradient is linear in the output delta, so `scale` (plain SGD passes its learning rate)
    multiplies them all by scaling that small (m, classes) array once, instead of each dW after.
    """
    _, f_prime = ACTIVATIONS[activation]
    m = len(y)
    delta = p.copy()
    delta[np.arange(m), y] -= 1.0
    delta *= scale / m  # (m, classes): d(loss)/d(zL), softmax and cross-entropy fused
    grads: Params = []
    for layer in range(len(params) - 1, -1, -1):
        W, _ = params[layer]
        a_prev = a[layer]  # (m, n(l-1))
        dW = a_prev.T @ delta  # (n(l-1), nl)
        if l2:
            dW += (scale * l2) * W
        db = delta.sum(axis=0)  # (nl,)
        grads.append((dW, db))
        if layer > 0:
            delta = delta @ W.T  # (m, n(l-1))
            delta *= f_prime(a_prev)
    grads.reverse()
    return grads


def objective(params: Params, X: Array, y: Labels, activation: str, l2: float) -> float:
    """Cross-entropy plus (l2 / 2) sum ||W||^2: the function whose gradient backward() returns."""
    loss, _ = cross_entropy(forward_logits(params, X, activation), y)
    return loss + 0.5 * l2 * sum(float(np.sum(W.astype(np.float64) ** 2)) for W, _ in params)


# --- the trainable network -------------------------------------------------------------------


class NumpyMLP:
    """Parameters, optimizer state and the training split; step() is one mini-batch update, in place."""

    def __init__(self, spec: TrainSpec, data: Split, params: Params | None = None) -> None:
        self.spec = spec
        self.data = data
        self.params = params if params is not None else init_params(spec)
        self.t = 0  # optimizer steps taken (Adam's bias correction)
        # The optimizer's running averages, one (W, b) pair per layer; empty where it keeps none.
        self.velocity = self._zeros() if spec.optimizer == "momentum" else []
        self.m1 = self._zeros() if spec.optimizer == "adam" else []
        self.m2 = self._zeros() if spec.optimizer == "adam" else []

    def _zeros(self) -> Params:
        return [(np.zeros_like(W), np.zeros_like(b)) for W, b in self.params]

    def step(self, idx: Indices, lr: float) -> float:
        """One update on the training split's rows idx; returns the batch's cross-entropy before it."""
        spec = self.spec
        X, y = self.data.images[idx], self.data.labels[idx]
        # A diverging run overflows float32 on its way to NaN; train() reports the NaN loss itself.
        with np.errstate(over="ignore", invalid="ignore"):
            a = forward(self.params, X, spec.activation)
            loss, p = cross_entropy(a[-1], y)
            sgd = spec.optimizer == "sgd"
            grads = backward(self.params, a, p, y, spec.activation, spec.l2, scale=lr if sgd else 1.0)
        self.t += 1
        lr32 = np.float32(lr)
        for i, ((W, b), (dW, db)) in enumerate(zip(self.params, grads, strict=True)):
            for j, (theta, g) in enumerate(((W, dW), (b, db))):
                if sgd:
                    theta -= g  # already lr x gradient
                elif spec.optimizer == "momentum":
                    # torch's form: v = mu v + g; theta -= lr v
                    v = self.velocity[i][j]
                    v *= np.float32(spec.momentum)
                    v += g
                    theta -= lr32 * v
                else:
                    self._adam(theta, g, self.m1[i][j], self.m2[i][j], lr)
        return loss

    def _adam(self, theta: Array, g: Array, m: Array, v: Array, lr: float) -> None:
        beta1, beta2, eps = 0.9, 0.999, 1e-8  # Kingma & Ba's defaults, as torch.optim.Adam
        m *= np.float32(beta1)
        m += np.float32(1 - beta1) * g
        v *= np.float32(beta2)
        v += np.float32(1 - beta2) * (g * g)
        bias1 = 1 - beta1**self.t
        bias2 = 1 - beta2**self.t
        # theta -= lr * m_hat / (sqrt(v_hat) + eps), with the corrections folded into scalars
        denom = np.sqrt(v) / np.float32(math.sqrt(bias2))
        denom += np.float32(eps)
        theta -= np.float32(lr / bias1) * (m / denom)

    def export(self) -> Params:
        return [(W.copy(), b.copy()) for W, b in self.params]

    # checkpoints: parameters and optimizer state, as an .npz
    def state(self) -> bytes:
        arrays: dict[str, NDArray[Any]] = {"t": np.array(self.t)}
        for name, group in (("p", self.params), ("vel", self.velocity), ("m1", self.m1), ("m2", self.m2)):
            for i, (W, b) in enumerate(group):
                arrays[f"{name}W{i}"], arrays[f"{name}b{i}"] = W, b
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=False, **arrays)
        return buf.getvalue()

    def load_state(self, blob: bytes) -> None:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            self.t = int(z["t"])
            for name, group in (("p", self.params), ("vel", self.velocity), ("m1", self.m1), ("m2", self.m2)):
                for i, (W, b) in enumerate(group):
                    W[...] = z[f"{name}W{i}"]
                    b[...] = z[f"{name}b{i}"]
