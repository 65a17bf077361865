"""What produced a model (GET /jobs/{id}'s provenance), training it again (POST /models/{id}/reproduce),
and taking it out as ONNX (GET /models/{id}/model.onnx), through the API with a real worker loop."""

from __future__ import annotations

import importlib.metadata
import platform
import socket
import subprocess

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from service.main import create_app
from service.ml import provenance
from service.ml.data import load_dataset
from service.ml.onnx_export import INPUT_NAME, OUTPUT_NAME
from service.ml.weights import load_weights
from service.settings import Settings
from tests.conftest import assert_problem
from tests.factories import job_body
from tests.support import REPO, real_data_dir
from workers.worker import run_worker

TOKEN = "reproduce-token-41c"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A trained NumPy model and a trained torch model."""
    root = tmp_path_factory.mktemp("provenance")
    settings = Settings(
        database_url=f"sqlite:///{root / 'api.db'}",
        data_dir=real_data_dir(),
        download=False,
        torch_device="cpu",
        worker_threads=2,
        max_queued=3,
    )
    with TestClient(create_app(settings)) as client:
        numpy_job = client.post("/jobs", json=job_body(activation="relu", init="he", epochs=2)).json()["id"]
        torch_job = client.post(
            "/jobs", json=job_body(backend="torch", optimizer="adam", learning_rate=0.01)
        ).json()["id"]
        run_worker(settings, once=True)
        yield client, settings, {"numpy": numpy_job, "torch": torch_job}


def test_a_job_records_what_trained_it(world):
    client, settings, ids = world
    numpy_run = client.get(f"/jobs/{ids['numpy']}").json()["provenance"]
    torch_run = client.get(f"/jobs/{ids['torch']}").json()["provenance"]
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    mnist = load_dataset("mnist", real_data_dir(), download=False)
    shared = {
        "mlplab": importlib.metadata.version("mlplab"),
        "git_commit": commit,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": importlib.metadata.version("numba"),
        "torch": importlib.metadata.version("torch"),
        "host": socket.gethostname(),
        "dataset": "mnist",
        "dataset_sha256": provenance.dataset_sha256(mnist),
    }
    for run in (numpy_run, torch_run):
        assert {key: run[key] for key in shared} == shared
        assert isinstance(run["git_modified"], bool) and run["cpus"] >= 1 and run["cpu"]
        assert run["blas"].startswith(("openblas ", "mkl ", "blis "))
    assert (numpy_run["device"], numpy_run["torch_matmul"]) == ("cpu", None)
    assert (torch_run["device"], torch_run["torch_matmul"]) == ("cpu", settings.torch_cpu_matmul)
    assert (
        numpy_run["threads"] == torch_run["threads"] == settings.worker_threads
    )  # the job's, either backend


def _reproduce(client, settings, model) -> dict:
    response = client.post(f"/models/{model}/reproduce")
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert job["status"] == "queued" and job["reproduction"] is None
    run_worker(settings, once=True)
    done = client.get(f"/jobs/{job['id']}").json()
    assert done["status"] == "succeeded", done["error"]
    return done


def test_a_numpy_model_reproduces_bit_for_bit(world):
    client, settings, ids = world
    original = client.get(f"/jobs/{ids['numpy']}").json()
    client.put("/aliases/champion", json={"model_id": ids["numpy"]})
    again = _reproduce(client, settings, "champion")  # by alias: the model it names now
    assert again["reproduces"] == ids["numpy"] and again["spec"] == original["spec"]
    assert again["reproduction"] == {
        "of": ids["numpy"],
        "weights_identical": True,
        "max_weight_difference": 0.0,
        "train_accuracy_change": 0.0,
        "validation_accuracy_change": 0.0,
        "test_accuracy_change": 0.0,
        "environment_changes": {},
        "summary": "bit-identical weights, on the same machine type",
    }
    first, second = (
        load_weights(client.get(f"/models/{i}/weights").content) for i in (ids["numpy"], again["id"])
    )
    for (W, b), (W2, b2) in zip(first.params, second.params, strict=True):
        assert np.array_equal(W, W2) and np.array_equal(b, b2)


def test_a_torch_reproduction_says_how_far_it_moved(world):
    client, settings, ids = world
    original = client.get(f"/jobs/{ids['torch']}").json()
    again = _reproduce(client, settings, ids["torch"])
    report = again["reproduction"]
    first, second = (
        load_weights(client.get(f"/models/{i}/weights").content) for i in (ids["torch"], again["id"])
    )
    difference = max(
        float(np.abs(a - a2).max())
        for (W, b), (W2, b2) in zip(first.params, second.params, strict=True)
        for a, a2 in ((W, W2), (b, b2))
    )
    assert report["of"] == ids["torch"]
    assert report["max_weight_difference"] == difference
    assert report["weights_identical"] == (difference == 0.0)
    assert report["test_accuracy_change"] == pytest.approx(again["test_accuracy"] - original["test_accuracy"])
    assert report["validation_accuracy_change"] == pytest.approx(
        again["validation_accuracy"] - original["validation_accuracy"]
    )
    assert report["train_accuracy_change"] == pytest.approx(
        again["train_accuracy"] - original["train_accuracy"]
    )
    assert report["summary"].endswith("on the same machine type")


def test_what_cannot_be_reproduced_is_refused(world):
    client, settings, ids = world
    assert_problem(client.post("/models/999999/reproduce"), 404, "There is no model 999999.")
    assert_problem(client.post("/models/nobody/reproduce"), 404, "There is no alias nobody.")
    queued = [client.post("/jobs", json=job_body(seed=s)).json()["id"] for s in range(3)]
    try:
        assert_problem(client.post(f"/models/{queued[0]}/reproduce"), 409, "is queued")
        assert_problem(client.post(f"/models/{ids['numpy']}/reproduce"), 429, "MLPLAB_MAX_QUEUED")
    finally:
        for job in queued:
            client.post(f"/jobs/{job}/cancel")


def test_reproducing_needs_the_token_when_one_is_set(world):
    _, settings, ids = world
    with TestClient(create_app(settings.model_copy(update={"api_token": SecretStr(TOKEN)}))) as client:
        assert_problem(client.post(f"/models/{ids['numpy']}/reproduce"), 401)
        assert client.get(f"/jobs/{ids['numpy']}").status_code == 200


def test_the_dataset_is_hashed_once_per_worker_process(world, monkeypatch):
    client, settings, _ = world
    calls = []
    monkeypatch.setattr(provenance, "_digests", {})
    monkeypatch.setattr(provenance, "dataset_sha256", lambda data: calls.append(data.name) or "f" * 64)
    jobs = [client.post("/jobs", json=job_body(seed=s)).json()["id"] for s in (11, 12)]
    run_worker(settings, once=True)
    assert calls == ["mnist"]
    assert {client.get(f"/jobs/{j}").json()["provenance"]["dataset_sha256"] for j in jobs} == {"f" * 64}


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_the_onnx_download_predicts_what_the_api_does(world, backend):
    client, _, ids = world
    response = client.get(f"/models/{ids[backend]}/model.onnx")
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    assert (
        response.headers["content-disposition"] == f'attachment; filename="mlplab-model-{ids[backend]}.onnx"'
    )
    session = ort.InferenceSession(response.content, providers=["CPUExecutionProvider"])
    images = load_dataset("mnist", real_data_dir(), download=False).test_images[:1000]
    (probabilities,) = session.run([OUTPUT_NAME], {INPUT_NAME: images})
    expected = load_weights(client.get(f"/models/{ids[backend]}/weights").content).predict_proba(images)
    assert np.abs(probabilities - expected).max() <= 1e-5
    assert (probabilities.argmax(axis=1) == expected.argmax(axis=1)).all()
    served = client.post(
        f"/models/{ids[backend]}/predict", json={"images": (images[:5] * 255).tolist()}
    ).json()
    assert [p["predicted"] for p in served["data"]] == probabilities[:5].argmax(axis=1).tolist()
    assert_problem(client.get("/models/999999/model.onnx"), 404)


def test_a_reproduction_takes_no_fields_rather_than_ignore_them(world):
    """{"seed": 2} sent to reproduce trained the model's own seed again, and said nothing."""
    client, _, ids = world
    model = ids["numpy"]
    before = client.get("/jobs").json()["count"]
    problem = assert_problem(client.post(f"/models/{model}/reproduce", json={"seed": 2}), 422, "body.seed")
    assert "Extra inputs are not permitted" in problem["detail"]
    assert client.get("/jobs").json()["count"] == before  # nothing queued
    assert client.post(f"/models/{model}/reproduce", json={}).status_code == 202
