"""The same network in PyTorch: nn.Linear layers, logits into CrossEntropyLoss.

It starts from the NumPy backend's initial weights (init_params), so one seed gives one
starting point in both backends, and exports to the same (W, b) format, W transposed
from nn.Linear's (out, in) to the row-major (in, out).

On CPU the large layers' products go through oneDNN rather than torch's BLAS
(torch_onednn.py; cpu_matmul="blas" keeps them all on nn.Linear).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from torch import nn

from . import torch_onednn
from .data import Indices, Split
from .network import CpuMatmul
from .numpy_mlp import Params, init_params
from .spec import TrainSpec

_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_model(spec: TrainSpec, params: Params, cpu_matmul: CpuMatmul = "onednn") -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (W, b) in enumerate(params):
        linear = torch_onednn.linear(W.shape[0], W.shape[1], cpu_matmul)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if i < len(params) - 1:
            layers.append(_ACTIVATIONS[spec.activation]())
    return nn.Sequential(*layers)


def _optimizer(spec: TrainSpec, model: nn.Sequential) -> torch.optim.Optimizer:
    # L2 is l2 * W added to the weights' gradient, not the biases' (the spec, and the NumPy
    # backend): two groups, weight_decay on the first only. Without L2, one group: one fused call.
    linears = [m for m in model if isinstance(m, nn.Linear)]
    groups: list[dict[str, Any]] = [
        {"params": [p for m in linears for p in (m.weight, m.bias)], "weight_decay": 0.0}
    ]
    if spec.l2:
        groups = [
            {"params": [m.weight for m in linears], "weight_decay": spec.l2},
            {"params": [m.bias for m in linears], "weight_decay": 0.0},
        ]
    # Fused: one pass over all parameters instead of a loop per parameter (docs/performance.md).
    if spec.optimizer == "adam":
        return torch.optim.Adam(groups, lr=spec.learning_rate, fused=True)
    momentum = spec.momentum if spec.optimizer == "momentum" else 0.0
    return torch.optim.SGD(groups, lr=spec.learning_rate, momentum=momentum, fused=True)


class TorchMLP:
    """Model, loss, optimizer and the training split on one device; step() is one mini-batch update."""

    def __init__(
        self,
        spec: TrainSpec,
        data: Split,
        params: Params | None = None,
        rows: Indices | None = None,
        device: str = "auto",
        threads: int | None = None,
        cpu_matmul: CpuMatmul = "onednn",
    ) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.spec = spec
        self.device = resolve_device(device)
        params = params if params is not None else init_params(spec)
        self.model = build_model(spec, params, cpu_matmul).to(self.device)
        self.loss_fn = nn.CrossEntropyLoss()  # takes logits: the softmax is inside, once
        self.optimizer = _optimizer(spec, self.model)
        # The examples on the device, once; a batch is an index selection. Taking the rows copies them
        # (the dataset's arrays are read-only and shared by the whole process): one copy, not two.
        rows = np.arange(len(data.labels)) if rows is None else rows
        self.X = torch.from_numpy(data.images[rows]).to(self.device)
        self.y = torch.from_numpy(data.labels[rows].astype(np.int64, copy=False)).to(self.device)

    def step(self, idx: Indices, lr: float) -> float:
        index = torch.from_numpy(idx).to(self.device)
        X, y = self.X.index_select(0, index), self.y.index_select(0, index)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(X), y)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def export(self) -> Params:
        linears = [m for m in self.model if isinstance(m, nn.Linear)]
        return [
            (
                # copies, always: ascontiguousarray of a (1, n) tensor's .T would be a view of live weights
                np.array(layer.weight.detach().cpu().numpy().T, dtype=np.float32, order="C", copy=True),
                np.array(layer.bias.detach().cpu().numpy(), dtype=np.float32, copy=True),
            )
            for layer in linears
        ]

    def state(self) -> bytes:
        buf = io.BytesIO()
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}, buf)
        return buf.getvalue()

    def load_state(self, blob: bytes) -> None:
        state = torch.load(io.BytesIO(blob), map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
