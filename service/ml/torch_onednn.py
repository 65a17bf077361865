"""The torch backend's CPU speed path: linear layers whose float32 products go through oneDNN.

torch's CPU nn.Linear calls addmm, which in the PyPI wheels is MKL; oneDNN's kernels are faster
for this network's shapes (docs/performance.md). torch reaches them through a private operator,
``torch.ops.mkldnn._linear_pointwise`` (the one Inductor emits for CPU), wrapped here in an
autograd Function that sends the backward pass's two products there too.

A private operator can vanish or change its meaning in any torch release, so it is looked up
once and checked against ``F.linear`` on a small product before use: when it is missing, raises
or computes something else, every layer is plain nn.Linear (and a warning says why).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .network import CpuMatmul

log = logging.getLogger("mlplab.torch_onednn")

# Smaller layers stay on the BLAS: oneDNN's per-call cost outweighs its faster product there.
MIN_WEIGHTS = 16384

Kernel = Callable[..., torch.Tensor]  # (a, w, bias, "none", [], "") -> a @ w.T + bias


def _find_op() -> Kernel | None:
    """The private operator itself, None in a build without it (tests replace this lookup)."""
    if not torch.backends.mkldnn.is_available():  # type: ignore[no-untyped-call]  # untyped in torch
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise.default
    except (AttributeError, RuntimeError):
        return None


def _mismatch(op: Kernel) -> str | None:
    """Why op is not ``a @ w.T + bias`` for the three products a layer needs, or None when it is."""
    g = torch.Generator().manual_seed(0)
    a, w, bias, grad = (torch.rand(*shape, generator=g) for shape in ((3, 5), (4, 5), (4,), (3, 4)))
    try:
        got = [
            op(a, w, bias, "none", [], ""),
            op(grad, w.T, None, "none", [], ""),
            op(grad.T, a.T, None, "none", [], ""),
        ]
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    wanted = [F.linear(a, w, bias), grad @ w, grad.T @ a]
    for name, result, expected in zip(["forward", "grad x", "grad W"], got, wanted, strict=True):
        if result.shape != expected.shape or not torch.allclose(result, expected, rtol=1e-4, atol=1e-5):
            return f"{name}: its result differs from F.linear's"
    return None


@functools.cache
def linear_pointwise() -> Kernel | None:
    """torch's oneDNN linear kernel if this build has one that computes F.linear; None otherwise."""
    op = _find_op()
    if op is None:
        return None
    problem = _mismatch(op)
    if problem is not None:
        log.warning("torch.ops.mkldnn._linear_pointwise is unusable (%s): nn.Linear's BLAS instead", problem)
        return None
    return op


def available() -> bool:
    return linear_pointwise() is not None


class _LinearFunction(torch.autograd.Function):
    """linear(x, W, b) with all three of its products in `kernel`, forward and backward."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, kernel: Kernel
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.kernel = kernel
        return kernel(x, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        kernel = ctx.kernel
        needs_x, needs_w, needs_b, _ = ctx.needs_input_grad
        grad_x = kernel(grad, weight.T, None, "none", [], "") if needs_x else None  # grad @ W
        grad_w = kernel(grad.T, x.T, None, "none", [], "") if needs_w else None  # grad.T @ x
        grad_b = grad.sum(0) if needs_b else None
        return grad_x, grad_w, grad_b, None


class Linear(nn.Linear):
    """nn.Linear (same parameters, init and state_dict) whose CPU float32 products may use oneDNN."""

    def __init__(self, in_features: int, out_features: int, onednn: bool = False) -> None:
        super().__init__(in_features, out_features)
        self.kernel = linear_pointwise() if onednn else None

    @property
    def onednn(self) -> bool:
        return self.kernel is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Batches of float32 rows on CPU only; anything else (CUDA, autocast, other ranks) is nn.Linear's.
        if (
            self.kernel is not None
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and x.dim() == 2
            and not torch.is_autocast_enabled("cpu")
        ):
            out: torch.Tensor = _LinearFunction.apply(x, self.weight, self.bias, self.kernel)  # type: ignore[no-untyped-call]  # untyped in torch
            return out
        return super().forward(x)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", onednn" if self.onednn else "")


def linear(in_features: int, out_features: int, cpu_matmul: CpuMatmul) -> Linear:
    """A layer on oneDNN when cpu_matmul asks for it and the layer is large enough to gain from it."""
    worth_it = cpu_matmul == "onednn" and in_features * out_features >= MIN_WEIGHTS
    return Linear(in_features, out_features, onednn=worth_it)
