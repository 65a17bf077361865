"""The one weight format for both backends, and inference from it in NumPy.

A model is an .npz archive (``numpy.savez``, no pickles) holding:

    format    "mlplab-mlp/1"
    spec      the TrainSpec as JSON text (activation, layer sizes, hyperparameters); files written
              before validation_size existed read as validation_size 0 (TrainSpec.from_stored)
    W1, b1    float32, W shaped (fan_in, fan_out), b shaped (fan_out,)
    ...
    WL, bL    the output layer; its outputs are logits over the classes

A batch X of flattened images (n, 784) in [0, 1] goes through
``a = f(a @ Wl + bl)`` for the hidden layers and ``a @ WL + bL`` for the logits:
row-major, as in the NumPy backend. The PyTorch backend stores nn.Linear's
weight transposed so that both backends write the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .npz import read_npz, write_npz
from .numpy_mlp import Params, forward_logits, softmax
from .spec import TrainSpec

FORMAT = "mlplab-mlp/1"


class WeightsError(ValueError):
    """Bytes that are not an mlplab weight file."""


@dataclass(frozen=True)
class Weights:
    spec: TrainSpec
    params: Params  # [(W1, b1), ..., (WL, bL)], float32

    def predict_proba(self, images: ArrayLike) -> NDArray[np.float32]:
        return predict_proba(self, images)


def dump_weights(spec: TrainSpec, params: Params) -> bytes:
    arrays: dict[str, NDArray[Any]] = {"spec": np.array(spec.model_dump_json())}
    for i, (W, b) in enumerate(params, start=1):
        arrays[f"W{i}"] = np.ascontiguousarray(W, dtype=np.float32)
        arrays[f"b{i}"] = np.ascontiguousarray(b, dtype=np.float32)
    return write_npz(FORMAT, arrays)


def load_weights(blob: bytes) -> Weights:
    with read_npz(blob, FORMAT, WeightsError, "weight") as npz:
        spec = TrainSpec.from_stored(str(npz["spec"]))
        n_layers = len(spec.layer_sizes) - 1
        params = [
            (npz[f"W{i}"].astype(np.float32, copy=False), npz[f"b{i}"].astype(np.float32, copy=False))
            for i in range(1, n_layers + 1)
        ]
    for i, ((W, b), fan_in, fan_out) in enumerate(
        zip(params, spec.layer_sizes[:-1], spec.layer_sizes[1:], strict=True), start=1
    ):
        if W.shape != (fan_in, fan_out) or b.shape != (fan_out,):
            raise WeightsError(
                f"layer {i} has shapes {W.shape}, {b.shape}; the spec says ({fan_in}, {fan_out})"
            )
    return Weights(spec=spec, params=params)


def predict_logits(
    weights: Weights | bytes,
    images: ArrayLike,
    chunk: int = 1024,
    between: Callable[[], None] | None = None,
) -> NDArray[np.float32]:
    """The output layer's logits (n, 10) for images (n, 784) in [0, 1], computed in float32 NumPy;
    `between` is called after each chunk (a training job's stop check, which raises: 70,000 images of a
    large network took 18 s, which a cancel waited out)."""
    if isinstance(weights, (bytes, bytearray, memoryview)):
        weights = load_weights(bytes(weights))
    X = np.asarray(images, dtype=np.float32)
    X = X.reshape(len(X), -1)
    out = np.empty((len(X), weights.spec.layer_sizes[-1]), dtype=np.float32)
    # Bounded memory for a whole split; 1,024 rows a chunk keep its activations in the caches (a quarter
    # less time for MNIST's 60,000 images than 8,192: docs/performance.md, "A job's wall time").
    for start in range(0, len(X), chunk):
        stop = start + chunk
        out[start:stop] = forward_logits(weights.params, X[start:stop], weights.spec.activation)
        if between is not None:
            between()
    return out


def predict_proba(
    weights: Weights | bytes,
    images: ArrayLike,
    chunk: int = 1024,
    between: Callable[[], None] | None = None,
) -> NDArray[np.float32]:
    """Class probabilities (n, 10): the softmax of predict_logits."""
    return softmax(predict_logits(weights, images, chunk, between))
