"""A trained network as an ONNX graph, built from the canonical weights (see weights.py).

The graph is the NumPy inference of weights.py, operator for operator:

    images         float32 [N, 784], pixels in [0, 1], N any batch size
    z1 = Gemm(images, W1, b1)                       W1 [784, n1] as stored: transB = 0
    a1 = Sigmoid | Tanh | Relu (z1)                 the spec's activation, every hidden layer
    ...
    logits         = Gemm(a(L-1), WL, bL)           float32 [N, 10], the second output
    probabilities  = Softmax(logits, axis = -1)     float32 [N, 10], the first output

Opset 17 (ONNX_OPSET), IR version 8: every operator above has had its current meaning since
opset 13 (Softmax over one axis), and onnxruntime has run opset 17 since 1.12 (2022), so older
runtimes and other engines load the file too; a newer opset would add nothing to this graph. The model's metadata_props carry the weight file's own keys, "format" (mlplab-mlp/1)
and "spec" (the TrainSpec as JSON), so an exported file still says what produced it.

Only this module imports onnx. Import it inside the handler that serves the export, never at a
module's top: neither the worker nor the API's start-up should pay for the package.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper, numpy_helper

from .spec import INPUT_SIZE, Activation
from .weights import FORMAT, Weights, load_weights

ONNX_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
LOGITS_NAME = "logits"
BATCH_DIM = "N"  # a symbolic dimension: any batch size

OPERATORS: dict[Activation, str] = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}


def export_onnx(weights: Weights | bytes) -> bytes:
    """The serialised ModelProto of the network (checked by onnx.checker), from weights or their .npz."""
    if isinstance(weights, (bytes, bytearray, memoryview)):
        weights = load_weights(bytes(weights))
    spec = weights.spec
    classes = spec.layer_sizes[-1]
    graph = helper.make_graph(
        _nodes(len(weights.params), spec.activation),
        "mlplab_mlp",
        inputs=[helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, INPUT_SIZE])],
        outputs=[
            helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, classes]),
            helper.make_tensor_value_info(LOGITS_NAME, TensorProto.FLOAT, [BATCH_DIM, classes]),
        ],
        initializer=_initializers(weights),
        doc_string=f"mlplab MLP {spec.name}",
    )
    # make_model_gen_version: the IR version that goes with the opset, not the newest one, which
    # older runtimes refuse to load.
    model = helper.make_model_gen_version(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        producer_name="mlplab",
        doc_string=(
            f"A multilayer perceptron trained by mlplab ({spec.backend} backend). "
            f"Input {INPUT_NAME!r}: float32 [N, {INPUT_SIZE}] in [0, 1]; outputs {OUTPUT_NAME!r} "
            f"and {LOGITS_NAME!r}: float32 [N, {classes}]."
        ),
    )
    helper.set_model_props(model, {"format": FORMAT, "spec": spec.model_dump_json()})
    onnx.checker.check_model(model, full_check=True)
    blob: bytes = model.SerializeToString()  # typed Any by protobuf's stubs
    return blob


def _initializers(weights: Weights) -> list[TensorProto]:
    """W1, b1, ..., WL, bL: the weight file's arrays under the weight file's names."""
    tensors = []
    for i, (W, b) in enumerate(weights.params, start=1):
        tensors.append(numpy_helper.from_array(W, f"W{i}"))
        tensors.append(numpy_helper.from_array(b, f"b{i}"))
    return tensors


def _nodes(n_layers: int, activation: Activation) -> list[onnx.NodeProto]:
    """Gemm and the activation per hidden layer, then Gemm to the logits and Softmax."""
    nodes = []
    a = INPUT_NAME
    for i in range(1, n_layers):
        nodes.append(helper.make_node("Gemm", [a, f"W{i}", f"b{i}"], [f"z{i}"], name=f"layer{i}"))
        a = f"a{i}"
        nodes.append(helper.make_node(OPERATORS[activation], [f"z{i}"], [a], name=f"{activation}{i}"))
    L = n_layers
    nodes.append(helper.make_node("Gemm", [a, f"W{L}", f"b{L}"], [LOGITS_NAME], name=f"layer{L}"))
    nodes.append(helper.make_node("Softmax", [LOGITS_NAME], [OUTPUT_NAME], axis=-1, name="softmax"))
    return nodes
