"""The NumPy training step's elementwise work, compiled with numba: one pass where NumPy takes several.

Between its matrix products a step adds biases, applies activations and their derivatives, takes
the softmax and the output delta, sums bias gradients and (momentum, Adam) updates every parameter
and its optimizer state: NumPy does each as one call and one pass
over memory per operation, and those calls cost a step more than their arithmetic
(docs/performance.md, "The NumPy step"). Each kernel here does one such group in one pass. The
products stay NumPy's (BLAS); tanh stays NumPy's too, as its vectorized float32 tanh is faster
than a compiled scalar loop.

Arithmetic is IEEE float32 in the textbook's order (no fastmath), so a step gives the same weights
every run on the same machine; they differ from the plain NumPy expressions by float32 rounding
only (tests/ml/test_numpy_mlp.py). Only the trainer imports this module: inference needs no numba.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
from numpy.typing import NDArray

from .data import Labels

F32 = np.float32
Kernel = TypeVar("Kernel", bound=Callable[..., Any])
Array = NDArray[np.float32]  # numba compiles from the arguments' types; the annotations are for mypy


def _compiled(function: Kernel) -> Kernel:
    """numba.njit, its machine code cached on disk where numba finds a writable place (else each process
    compiles its own)."""
    options: dict[str, Any] = {"nogil": True, "error_model": "numpy"}  # numpy: x/0 is inf, not an exception
    try:
        compiled = numba.njit(cache=True, **options)(function)
    except RuntimeError:  # numba found no writable cache directory
        compiled = numba.njit(**options)(function)
    return cast(Kernel, compiled)  # a dispatcher, called as the function it compiles


# --- forward: z = a @ W is NumPy's product; these finish the layer in place --------------------


@_compiled
def add_bias(z: Array, b: Array) -> None:
    m, n = z.shape
    for i in range(m):
        for j in range(n):
            z[i, j] += b[j]


@_compiled
def add_bias_relu(z: Array, b: Array) -> None:
    m, n = z.shape
    for i in range(m):
        for j in range(n):
            v = z[i, j] + b[j]
            z[i, j] = F32(0.0) if v <= 0 else v  # a NaN passes through, as with np.maximum


@_compiled
def add_bias_halve(z: Array, b: Array) -> None:
    m, n = z.shape
    for i in range(m):
        for j in range(n):
            z[i, j] = (z[i, j] + b[j]) * F32(0.5)


@_compiled
def one_plus_halved(z: Array) -> None:
    m, n = z.shape
    for i in range(m):
        for j in range(n):
            z[i, j] = (z[i, j] + F32(1.0)) * F32(0.5)


def activate_sigmoid(z: Array, b: Array) -> None:
    # sigmoid(x) = 0.5 (1 + tanh(x / 2)): cannot overflow for large negative x
    add_bias_halve(z, b)
    np.tanh(z, out=z)
    one_plus_halved(z)


def activate_tanh(z: Array, b: Array) -> None:
    add_bias(z, b)
    np.tanh(z, out=z)


# f(z + b), in place, for each hidden activation
ACTIVATE: dict[str, Callable[[Array, Array], None]] = {
    "sigmoid": activate_sigmoid,
    "tanh": activate_tanh,
    "relu": add_bias_relu,
}


# --- the loss and the output delta -------------------------------------------------------------


@_compiled
def softmax_cross_entropy(z: Array, b: Array, y: Labels, scale: float, delta: Array) -> float:
    """z += b (the logits); delta = (softmax(z) - onehot(y)) * scale / m; returns the mean cross-entropy.

    Per row: one exp for both, with e = exp(z - max), p = e / sum(e) and log p[y] = (z[y] - max) -
    log sum(e), so neither overflows nor takes log(0).
    """
    m, n = z.shape
    s = F32(scale / m)
    total = 0.0
    for i in range(m):
        label = y[i]
        if label < 0 or label >= n:
            raise IndexError("a label outside the output layer")
        top = F32(-np.inf)
        for j in range(n):
            v = z[i, j] + b[j]
            z[i, j] = v
            if v > top:
                top = v
        sum_e = F32(0.0)
        for j in range(n):
            e = np.exp(z[i, j] - top)
            delta[i, j] = e
            sum_e += e
        total += np.log(sum_e) - (z[i, label] - top)  # a NaN logit makes the loss NaN, as it must
        for j in range(n):
            p = delta[i, j] / sum_e
            if j == label:
                p -= F32(1.0)
            delta[i, j] = p * s
    return float(total / m)


# --- backward ----------------------------------------------------------------------------------


@_compiled
def bias_gradient(delta: Array, db: Array, b: Array, descend: bool) -> None:
    """db = the column sums of delta; with `descend` (plain SGD, delta already scaled), also b -= db."""
    m, n = delta.shape
    for j in range(n):
        db[j] = delta[0, j]
    for i in range(1, m):
        for j in range(n):
            db[j] += delta[i, j]
    if descend:
        for j in range(n):
            b[j] -= db[j]


@_compiled
def times_sigmoid_prime(d: Array, a: Array) -> None:
    m, n = d.shape
    for i in range(m):
        for j in range(n):
            d[i, j] *= a[i, j] * (F32(1.0) - a[i, j])


@_compiled
def times_tanh_prime(d: Array, a: Array) -> None:
    m, n = d.shape
    for i in range(m):
        for j in range(n):
            d[i, j] *= F32(1.0) - a[i, j] * a[i, j]


@_compiled
def times_relu_prime(d: Array, a: Array) -> None:
    m, n = d.shape
    for i in range(m):
        for j in range(n):
            if not a[i, j] > 0:  # as np.greater: a NaN activation passes no gradient
                d[i, j] = F32(0.0)


# d *= f'(a), in place, from the activation's output a = f(z)
TIMES_PRIME: dict[str, Callable[[Array, Array], None]] = {
    "sigmoid": times_sigmoid_prime,
    "tanh": times_tanh_prime,
    "relu": times_relu_prime,
}


# --- the optimizers' steps: one pass over a parameter and its state (flattened) ------------------


@_compiled
def momentum_step(theta: Array, g: Array, v: Array, mu: np.float32, rate: np.float32) -> None:
    """v = mu v + g; theta -= rate v (torch's heavy ball)."""
    for i in range(theta.size):
        vi = v[i] * mu + g[i]
        v[i] = vi
        theta[i] -= vi * rate


@_compiled
def adam_step(
    theta: Array,
    g: Array,
    m: Array,
    v: Array,
    beta1: np.float32,
    one_minus_beta1: np.float32,
    beta2: np.float32,
    one_minus_beta2: np.float32,
    sqrt_correction2: np.float32,
    eps: np.float32,
    rate: np.float32,
) -> None:
    """m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2; theta -= rate m / (sqrt(v) / sqrt_correction2 + eps).

    The bias corrections are folded into the float32 scalars (rate = lr / (1 - beta1^t)), computed
    by the caller in float64 and rounded once.
    """
    for i in range(theta.size):
        gi = g[i]
        mi = m[i] * beta1 + gi * one_minus_beta1
        vi = v[i] * beta2 + (gi * gi) * one_minus_beta2
        m[i] = mi
        v[i] = vi
        theta[i] -= (mi / (np.sqrt(vi) / sqrt_correction2 + eps)) * rate


def warm() -> None:
    """Compile (or load from the cache) every kernel for the step's types, so no job pays for it."""
    z, b = np.ones((2, 3), F32), np.zeros(3, F32)
    for activate, times_prime in zip(ACTIVATE.values(), TIMES_PRIME.values(), strict=True):
        activate(z, b)
        times_prime(z, z.copy())
    softmax_cross_entropy(z, b, np.zeros(2, np.int64), 1.0, np.empty_like(z))  # labels: data.Labels
    for descend in (True, False):
        bias_gradient(z, np.empty_like(b), b, descend)
    one = F32(1.0)
    momentum_step(b, b.copy(), b.copy(), one, one)
    adam_step(b, b.copy(), b.copy(), b.copy(), *([one] * 7))
