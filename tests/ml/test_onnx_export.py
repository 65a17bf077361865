"""The exported ONNX graph, run in onnxruntime, predicts what mlplab's own predict_proba does."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from service.ml.onnx_export import INPUT_NAME, LOGITS_NAME, ONNX_OPSET, OUTPUT_NAME, export_onnx
from service.ml.spec import TrainSpec
from service.ml.train import train
from service.ml.weights import FORMAT, load_weights, predict_proba
from tests.factories import no_holdout
from tests.support import REPO

PARITY_IMAGES = 1000
MAX_PROBABILITY_DIFFERENCE = 1e-5


def session(model: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def trained(mnist, backend: str, activation: str, hidden_layers: list[int]) -> bytes:
    """The .npz of a network trained for one short epoch on the real MNIST."""
    spec = TrainSpec(
        backend=backend,
        activation=activation,
        hidden_layers=hidden_layers,
        optimizer="adam",
        learning_rate=0.003,
        epochs=1,
        train_limit=5000,
    )
    return train(spec, mnist, device="cpu").weights


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("backend", "activation", "hidden_layers"),
    [
        ("numpy", "sigmoid", [128]),
        ("torch", "sigmoid", [256, 128, 64]),
        ("numpy", "tanh", [200, 100]),
        ("torch", "tanh", [100]),
        ("numpy", "relu", [500, 250, 100]),
        ("torch", "relu", [300]),
    ],
)
def test_onnxruntime_predicts_what_predict_proba_does(backend, activation, hidden_layers, mnist):
    weights = trained(mnist, backend, activation, hidden_layers)
    images = mnist.test_images[:PARITY_IMAGES]
    probabilities, logits = session(export_onnx(weights)).run(None, {INPUT_NAME: images})
    expected = predict_proba(weights, images)
    assert probabilities.dtype == np.float32 and probabilities.shape == (PARITY_IMAGES, 10)
    assert np.abs(probabilities - expected).max() <= MAX_PROBABILITY_DIFFERENCE
    assert (probabilities.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert (logits.argmax(axis=1) == expected.argmax(axis=1)).all()
    # a network that learned: the parity is about real predictions, not a near-uniform output
    assert (expected.argmax(axis=1) == mnist.test_labels[:PARITY_IMAGES]).mean() >= 0.8


@pytest.fixture(scope="module")
def several_layers(mnist) -> bytes:
    return trained(mnist, "numpy", "tanh", [64, 32, 16])


@pytest.mark.realdata
def test_the_model_is_valid_and_says_what_produced_it(several_layers):
    model = onnx.load_from_string(export_onnx(several_layers))
    onnx.checker.check_model(model, full_check=True)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert metadata.keys() == {"format", "spec"}
    assert metadata["format"] == FORMAT
    assert TrainSpec.model_validate_json(metadata["spec"]) == load_weights(several_layers).spec
    assert json.loads(metadata["spec"])["hidden_layers"] == [64, 32, 16]
    assert "mlplab" in model.doc_string and model.producer_name == "mlplab"
    assert [(opset.domain, opset.version) for opset in model.opset_import] == [("", ONNX_OPSET)]
    assert model.ir_version == 8  # opset 17's: a newer IR would shut out older runtimes


@pytest.mark.realdata
def test_the_graph_is_gemm_and_activation_per_hidden_layer_then_softmax(several_layers):
    graph = onnx.load_from_string(export_onnx(several_layers)).graph
    assert [node.op_type for node in graph.node] == ["Gemm", "Tanh"] * 3 + ["Gemm", "Softmax"]
    assert [i.name for i in graph.input] == [INPUT_NAME]
    assert [o.name for o in graph.output] == [OUTPUT_NAME, LOGITS_NAME]
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # any batch size


@pytest.mark.realdata
def test_one_image_and_a_batch_give_the_same_answer(several_layers, mnist):
    """The five lines of the README: one (1, 784) float32 row in, its digit out."""
    runtime = session(export_onnx(several_layers))
    images = mnist.test_images[:32]
    (batch,) = runtime.run([OUTPUT_NAME], {INPUT_NAME: images})
    for i in (0, 17, 31):
        (one,) = runtime.run([OUTPUT_NAME], {INPUT_NAME: images[i : i + 1]})
        assert one.shape == (1, 10)
        np.testing.assert_allclose(one[0], batch[i], atol=1e-6)
        assert one.argmax() == predict_proba(several_layers, images[i : i + 1]).argmax()


def test_the_weight_file_or_its_loaded_weights_export_the_same_model(tiny_dataset):
    spec = no_holdout(backend="numpy", hidden_layers=[8], epochs=1)
    blob = train(spec, tiny_dataset).weights
    assert export_onnx(blob) == export_onnx(load_weights(blob))


@pytest.mark.slow  # two Python processes
def test_neither_the_api_nor_the_worker_imports_onnx():
    """onnx loads only when a model is exported, never at start-up."""
    code = "import sys, service.main, workers.worker; print(sorted(m for m in sys.modules if 'onnx' in m))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
