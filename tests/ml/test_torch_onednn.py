"""The torch backend's oneDNN linear layer: same numbers as nn.Linear, used on CPU, and nn.Linear itself
when the private operator is missing or changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from service.ml import torch_onednn
from service.ml.data import Split
from service.ml.spec import TrainSpec
from service.ml.torch_mlp import TorchMLP
from service.ml.torch_onednn import Linear

needs_onednn = pytest.mark.skipif(not torch_onednn.available(), reason="this torch build has no oneDNN")


def _grads(layer_fn, x, weight, bias, grad_out):
    x, weight, bias = (t.detach().clone().requires_grad_(True) for t in (x, weight, bias))
    out = layer_fn(x, weight, bias)
    out.backward(grad_out)
    return out.detach(), x.grad, weight.grad, bias.grad


@needs_onednn
@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("fan_in, fan_out", [(784, 500), (250, 100), (33, 129)])
def test_onednn_linear_matches_nn_linear_forward_and_every_gradient(batch, fan_in, fan_out):
    g = torch.Generator().manual_seed(batch * fan_in + fan_out)
    x = torch.rand(batch, fan_in, generator=g)
    weight = torch.randn(fan_out, fan_in, generator=g) / fan_in**0.5
    bias = torch.randn(fan_out, generator=g)
    grad_out = torch.randn(batch, fan_out, generator=g)
    layer = Linear(fan_in, fan_out, onednn=True)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    x1 = x.clone().requires_grad_(True)
    out = layer(x1)  # the module, then autograd's backward: what training runs
    out.backward(grad_out)
    expected = _grads(F.linear, x, weight, bias, grad_out)
    for name, got, want in zip(
        ["output", "grad x", "grad W", "grad b"],
        [out.detach(), x1.grad, layer.weight.grad, layer.bias.grad],
        expected,
        strict=True,
    ):
        assert got.shape == want.shape, name
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item(), msg=name)


@needs_onednn
def test_inputs_outside_its_case_get_nn_linear_itself():
    layer = Linear(20, 30, onednn=True)
    x = torch.rand(4, 5, 20)  # a leading batch dimension: nn.Linear's broadcasting
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # autocast's choice, as nn.Linear would make it
        assert layer(torch.rand(4, 20)).dtype == torch.bfloat16


def _examples(n: int = 64) -> Split:
    rng = np.random.default_rng(0)
    return Split(rng.random((n, 784), dtype=np.float32), np.arange(n) % 10)


def _linear_ops(net: TorchMLP) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        net.step(np.arange(16), 0.1)
    return {e.key for e in prof.key_averages()} & {"mkldnn::_linear_pointwise", "aten::addmm", "aten::mm"}


@needs_onednn
def test_large_layers_use_onednn_on_cpu_and_blas_is_a_setting_away():
    spec = TrainSpec(backend="torch")  # 784-500-250-100-10
    onednn = TorchMLP(spec, _examples(), device="cpu")
    assert [m.onednn for m in onednn.model if isinstance(m, Linear)] == [True, True, True, False]
    assert "mkldnn::_linear_pointwise" in _linear_ops(onednn)

    blas = TorchMLP(spec, _examples(), device="cpu", cpu_matmul="blas")
    assert not any(m.onednn for m in blas.model if isinstance(m, Linear))
    assert _linear_ops(blas) == {"aten::addmm", "aten::mm"}


@needs_onednn
def test_onednn_training_is_deterministic_and_exports_plain_linear_weights():
    spec = TrainSpec(
        backend="torch", hidden_layers=[300, 100], activation="relu", optimizer="adam", learning_rate=1e-3
    )

    def trained():
        net = TorchMLP(spec, _examples(), device="cpu")
        for _ in range(5):
            net.step(np.arange(64), 1e-3)
        return net

    a, b = trained(), trained()
    for (Wa, ba), (Wb, bb) in zip(a.export(), b.export(), strict=True):
        assert (Wa == Wb).all() and (ba == bb).all()
    # The state_dict is nn.Linear's: a blas model loads a oneDNN model's checkpoint as is.
    blas = TorchMLP(spec, _examples(), device="cpu", cpu_matmul="blas")
    blas.load_state(a.state())
    assert all((Wa == Wc).all() for (Wa, _), (Wc, _) in zip(a.export(), blas.export(), strict=True))


def _renamed(*args):
    raise RuntimeError("mkldnn::_linear_pointwise() expected at most 5 argument(s) but received 6")


def _bias_dropped(a, w, bias, *rest):
    return a @ w.T


@pytest.fixture
def private_op(monkeypatch):
    """Stands in for the lookup of torch's private operator, as a torch upgrade might change it."""

    def replace(op):
        monkeypatch.setattr(torch_onednn, "_find_op", lambda: op)
        torch_onednn.linear_pointwise.cache_clear()

    yield replace
    torch_onednn.linear_pointwise.cache_clear()


@pytest.mark.parametrize(
    "op, warning",
    [
        (None, None),
        (_renamed, "RuntimeError: mkldnn::_linear_pointwise() expected"),
        (_bias_dropped, "forward: its result differs"),
    ],
    ids=["missing", "raises", "changed"],
)
def test_without_a_working_operator_every_layer_is_nn_linear(op, warning, private_op, caplog):
    private_op(op)
    spec = TrainSpec(
        backend="torch", hidden_layers=[300, 100], activation="relu", optimizer="adam", learning_rate=1e-3
    )
    onednn = TorchMLP(spec, _examples(), device="cpu")
    blas = TorchMLP(spec, _examples(), device="cpu", cpu_matmul="blas")
    assert not torch_onednn.available()
    assert not any(m.onednn for m in onednn.model if isinstance(m, Linear))
    if warning is None:
        assert "unusable" not in caplog.text
    else:
        assert f"_linear_pointwise is unusable ({warning}" in caplog.text

    # Training steps are nn.Linear's (F.linear's) to the bit: the network asked for oneDNN and got the BLAS.
    for batch in np.array_split(np.random.default_rng(1).permutation(64), 3):
        assert onednn.step(batch, 1e-3) == blas.step(batch, 1e-3)
    for (Wa, ba), (Wb, bb) in zip(onednn.export(), blas.export(), strict=True):
        assert (Wa == Wb).all() and (ba == bb).all()
    layer = Linear(20, 30, onednn=True)
    x = torch.rand(4, 20)
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
