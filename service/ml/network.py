"""The trainable network, whichever the backend: what train() asks of it, and make_network().

A network holds the images it trains on (the torch one on its device, once) and steps on batches of
indices into them, so a batch never crosses to the device on its own.
"""

from __future__ import annotations

from typing import Literal, Protocol, TypedDict, Unpack

from .data import Indices, Split
from .numpy_mlp import NumpyMLP, Params
from .spec import TrainSpec

CpuMatmul = Literal["onednn", "blas"]  # where torch's CPU products go: oneDNN where it gains, or the BLAS


class Network(Protocol):
    """One backend's model and optimizer state: numpy_mlp.NumpyMLP or torch_mlp.TorchMLP."""

    def step(self, idx: Indices, lr: float) -> float:
        """One update on the examples idx (see make_network); returns the batch's cross-entropy before it."""
        ...

    def export(self) -> Params:
        """The weights as float32 (W, b) pairs, W shaped (fan_in, fan_out): weights.py's format."""
        ...

    def state(self) -> bytes:
        """Parameters and optimizer state, for a checkpoint."""
        ...

    def load_state(self, blob: bytes) -> None:
        """Back to what state() returned; raises on bytes it can't take (another version's)."""
        ...


class BackendOptions(TypedDict, total=False):
    """How this machine runs the torch backend (the MLPLAB_TORCH_* settings); NumPy takes none."""

    device: str  # "auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...
    threads: int | None  # torch's intra-op threads; None leaves torch's default
    cpu_matmul: CpuMatmul


def make_network(
    spec: TrainSpec, data: Split, rows: Indices | None = None, **options: Unpack[BackendOptions]
) -> Network:
    """A fresh network at spec's initial weights, training on data's `rows` (all of them by default):
    its example i is the split's row rows[i]."""
    if spec.backend == "torch":
        from .torch_mlp import TorchMLP  # the API imports service.ml.train, never torch

        return TorchMLP(spec, data, rows=rows, **options)
    return NumpyMLP(spec, data, rows=rows)
