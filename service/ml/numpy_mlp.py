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

The functions below are that math, one NumPy expression per line: inference uses forward(), and
the tests check backward() against finite differences. NumpyMLP.step() computes the same in fewer
passes: its matrix products are NumPy's, the elementwise work between them is compiled (kernels.py),
and every array it writes lives in a Workspace allocated once per batch size, so a step allocates
no large array (docs/performance.md).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import blas
from .data import Indices, Labels, Split
from .spec import TrainSpec

Array = NDArray[np.float32]  # every matrix and vector of the network
Params = list[tuple[Array, Array]]  # [(W1, b1), ..., (WL, bL)]


# --- activations, each beside its derivative ------------------------------------------------
# The activations overwrite z in place; the derivatives take the activation's output a = f(z).


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


# --- the training step's buffers -------------------------------------------------------------


class Workspace:
    """Every array one training step writes, for one batch size m: allocated once, rewritten with out=."""

    x: Array
    a: list[Array]
    delta: list[Array]
    grads: Params
    l2: list[Array]

    def __init__(self, params: Params, m: int, l2: bool = False, within: Workspace | None = None) -> None:
        """`within`: a workspace of a larger batch, whose buffers this one's are the first m rows of (an
        epoch's batches one image smaller held a second set: 1.8 GB instead of 1.2 at the limits)."""
        if m < 1:  # the kernels read a batch's first row unchecked
            raise ValueError("a training step needs at least one example")
        if within is not None:
            self.x, self.grads, self.l2 = within.x[:m], within.grads, within.l2
            self.a, self.delta = [a[:m] for a in within.a], [d[:m] for d in within.delta]
        else:
            dtype = params[0][0].dtype
            widths = [W.shape[1] for W, _ in params]
            self.x = np.empty((m, params[0][0].shape[0]), dtype)  # a0, gathered from the split
            self.a = [np.empty((m, n), dtype) for n in widths]  # a1, ..., a(L-1), zL
            self.delta = [np.empty((m, n), dtype) for n in widths]  # delta1, ..., deltaL
            self.grads = [(np.empty_like(W), np.empty_like(b)) for W, b in params]
            self.l2 = [np.empty_like(W) for W, _ in params] if l2 else []  # l2 W, added to a gradient
        # Plain SGD's W -= a(l-1).T @ deltal, bound to these buffers once (None: compute dW, then step)
        below = [self.x, *self.a[:-1]]
        self.descend = [
            blas.descender(W, a, d) for (W, _), a, d in zip(params, below, self.delta, strict=True)
        ]


# --- forward, loss, backward: the textbook form ----------------------------------------------


def forward(params: Params, X: Array, activation: str) -> list[Array]:
    """Activations [a0 = X, a1, ..., a(L-1), zL]: the last entry is the logits."""
    f, _ = ACTIVATIONS[activation]
    a = [X]
    last = len(params) - 1
    for layer, (W, b) in enumerate(params):
        z = a[-1] @ W  # (m, nl)
        z += b  # in place: inference runs this on a thousand images a chunk
        a.append(f(z) if layer < last else z)  # the output layer's logits stay z
    return a


def forward_logits(params: Params, X: Array, activation: str) -> Array:
    return forward(params, X, activation)[-1]


def cross_entropy(logits: Array, y: Labels) -> tuple[float, Array]:
    """Mean cross-entropy of softmax(logits) against integer labels y, and the probabilities."""
    # One exp for both: p = e / sum(e) with e = exp(z - max), and in log-sum-exp form
    # log p[y] = (z[y] - max) - log sum(e), never log(0).
    e = logits - logits.max(axis=1, keepdims=True)
    log_p_y = e[np.arange(len(y)), y]  # (m,): a copy, taken before the exp
    np.exp(e, out=e)
    total = e.sum(axis=1, keepdims=True)
    log_p_y -= np.log(total[:, 0])
    e /= total
    return float(-log_p_y.mean()), e


def backward(params: Params, a: list[Array], p: Array, y: Labels, activation: str, l2: float) -> Params:
    """Gradients (dW, db) of the objective for every layer, from the forward pass's activations."""
    _, f_prime = ACTIVATIONS[activation]
    m = len(y)
    delta = p.copy()
    delta[np.arange(m), y] -= 1.0
    delta /= m  # (m, classes): d(loss)/d(zL), softmax and cross-entropy fused
    grads: Params = []
    for layer in range(len(params) - 1, -1, -1):
        W, _ = params[layer]
        grads.insert(0, (a[layer].T @ delta + l2 * W, delta.sum(axis=0)))
        if layer > 0:
            delta = (delta @ W.T) * f_prime(a[layer])  # (m, n(l-1))
    return grads


def objective(params: Params, X: Array, y: Labels, activation: str, l2: float) -> float:
    """Cross-entropy plus (l2 / 2) sum ||W||^2: the function whose gradient backward() returns."""
    loss, _ = cross_entropy(forward_logits(params, X, activation), y)
    return loss + 0.5 * l2 * sum(float(np.sum(W.astype(np.float64) ** 2)) for W, _ in params)


# --- the trainable network -------------------------------------------------------------------


class NumpyMLP:
    """Parameters, optimizer state and the training split; step() is one mini-batch update, in place."""

    # The step's parts in order, each a method `_<part>`: bench/train.py times them inside real steps.
    PARTS = ("forward", "loss", "backward", "update")

    def __init__(
        self, spec: TrainSpec, data: Split, params: Params | None = None, rows: Indices | None = None
    ) -> None:
        self.spec = spec
        self.data = data
        self.rows = rows  # example i is data's row rows[i]; None: every row, in order
        # C-contiguous, as the kernels update them through flat views and the gemm step by pointer
        given = params if params is not None else init_params(spec)
        self.params = [(np.ascontiguousarray(W), np.ascontiguousarray(b)) for W, b in given]
        self.t = 0  # optimizer steps taken (Adam's bias correction)
        self.sgd = spec.optimizer == "sgd"  # plain SGD steps inside the backward pass, scaled by its lr
        # The optimizer's running averages, one (W, b) pair per layer; empty where it keeps none.
        self.velocity = self._zeros() if spec.optimizer == "momentum" else []
        self.m1 = self._zeros() if spec.optimizer == "adam" else []
        self.m2 = self._zeros() if spec.optimizer == "adam" else []
        self._workspaces: dict[int, Workspace] = {}  # by batch size: an epoch's batches differ by one image
        from . import kernels  # numba loads where NumPy trains; inference (the API) needs none of it

        self._kernels = kernels
        self._activate = kernels.ACTIVATE[spec.activation]
        self._times_prime = kernels.TIMES_PRIME[spec.activation]

    def _zeros(self) -> Params:
        return [(np.zeros_like(W), np.zeros_like(b)) for W, b in self.params]

    def step(self, idx: Indices, lr: float) -> float:
        """One update on the examples idx (see make_network); returns the batch's cross-entropy before it."""
        ws = self._workspaces.get(len(idx))
        if ws is None:
            larger = [w for m, w in self._workspaces.items() if m > len(idx)]
            ws = self._workspaces[len(idx)] = Workspace(
                self.params, len(idx), bool(self.spec.l2), within=larger[0] if larger else None
            )
        if self.rows is not None:
            idx = self.rows[idx]
        y = self.data.labels[idx]
        # A diverging run overflows float32 on its way to NaN; train() reports the NaN loss itself.
        scale = lr if self.sgd else 1.0  # plain SGD's learning rate, folded into the output delta
        with np.errstate(over="ignore", invalid="ignore"):
            a = self._forward(idx, ws)
            loss = self._loss(a[-1], y, scale, ws)
            grads = self._backward(a, scale, ws)
        self.t += 1
        if not self.sgd:
            self._update(grads, lr)
        return loss

    def _forward(self, idx: Indices, ws: Workspace) -> list[Array]:
        """[a0, ..., a(L-1), zL less its bias]: the output layer's bias is added with the softmax."""
        # mode="raise" would gather into a hidden copy of out; idx holds rows of the split (epoch_batches)
        a = [np.take(self.data.images, idx, axis=0, out=ws.x, mode="clip")]  # (m, n0)
        last = len(self.params) - 1
        for layer, (W, b) in enumerate(self.params):
            z = np.matmul(a[-1], W, out=ws.a[layer])  # (m, nl)
            if layer < last:
                self._activate(z, b)  # f(z + b), in place
            a.append(z)
        return a

    def _loss(self, logits: Array, y: Labels, scale: float, ws: Workspace) -> float:
        """The batch's cross-entropy; leaves d(loss)/d(zL), times `scale`, in ws.delta[-1]."""
        return self._kernels.softmax_cross_entropy(logits, self.params[-1][1], y, scale, ws.delta[-1])

    def _backward(self, a: list[Array], scale: float, ws: Workspace) -> Params:
        """Gradients (dW, db) into ws.grads, from the output delta the loss left, times `scale`.

        Every gradient is linear in the output delta, so plain SGD passes its learning rate as `scale`,
        and each layer's parameters take their step in place instead, W -= dW and b -= db, as soon as
        the layer below has used W; without l2, the product goes straight into W (blas.descender).
        """
        l2, kernels = self.spec.l2, self._kernels
        delta = ws.delta[-1]
        for layer in range(len(self.params) - 1, -1, -1):
            W, b = self.params[layer]
            dW, db = ws.grads[layer]
            a_prev = a[layer]  # (m, n(l-1))
            kernels.bias_gradient(delta, db, b, self.sgd)  # db; plain SGD: b -= db too
            below = np.matmul(delta, W.T, out=ws.delta[layer - 1]) if layer > 0 else None  # (m, n(l-1))
            descend = ws.descend[layer] if self.sgd and not l2 else None
            if descend is not None:
                descend()  # W -= a(l-1).T @ delta, in one gemm
            else:
                np.matmul(a_prev.T, delta, out=dW)  # (n(l-1), nl)
                if l2:
                    dW += np.multiply(W, scale * l2, out=ws.l2[layer])
                if self.sgd:
                    W -= dW
            if below is not None:
                self._times_prime(below, a_prev)  # delta(l-1) = (delta W.T) * f'(a(l-1))
                delta = below
        return ws.grads

    def _update(self, grads: Params, lr: float) -> None:
        """Each parameter updated in place, in one pass over it and its optimizer state (kernels.py)."""
        f32, kernels = np.float32, self._kernels
        if self.spec.optimizer == "momentum":  # torch's form: v = mu v + g; theta -= lr v
            mu, rate = f32(self.spec.momentum), f32(lr)
            for (W, b), (dW, db), (vW, vb) in zip(self.params, grads, self.velocity, strict=True):
                kernels.momentum_step(W.reshape(-1), dW.reshape(-1), vW.reshape(-1), mu, rate)
                kernels.momentum_step(b, db, vb, mu, rate)
            return
        # Adam, Kingma & Ba's defaults as torch.optim.Adam's; the bias corrections folded into scalars
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        corrected = (
            math.sqrt(1 - beta2**self.t),
            eps,
            lr / (1 - beta1**self.t),
        )  # sqrt(v) divisor, eps, rate
        scalars = [f32(x) for x in (beta1, 1 - beta1, beta2, 1 - beta2, *corrected)]
        for (W, b), (dW, db), (mW, mb), (vW, vb) in zip(self.params, grads, self.m1, self.m2, strict=True):
            kernels.adam_step(W.reshape(-1), dW.reshape(-1), mW.reshape(-1), vW.reshape(-1), *scalars)
            kernels.adam_step(b, db, mb, vb, *scalars)

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
