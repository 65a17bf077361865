"""The product end to end: real HTTP to a uvicorn process, real worker processes, a real SQLite file,
then the same on PostgreSQL."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ON_EVERY_DATABASE

pytestmark = [ON_EVERY_DATABASE, pytest.mark.slow]  # real API and worker processes

SMALL = {
    "backend": "numpy",
    "hidden_layers": [64],
    "activation": "relu",
    "init": "he",
    "optimizer": "adam",
    "learning_rate": 0.003,
    "epochs": 2,
    "train_limit": 3000,
    "log_every": 10,
}


@pytest.fixture(scope="module")
def trained(service):
    """One small job, trained by the worker; returns its final JobPublic."""
    with service.client() as client:
        response = client.post("/jobs", json=SMALL)
        assert response.status_code == 202
        job = response.json()
        assert response.headers["location"] == f"/jobs/{job['id']}"
        assert job["status"] == "queued" and job["spec"]["train_limit"] == 3000
        return service.wait_job(client, job["id"], timeout=120)


def test_a_submitted_job_trains_and_records_its_progress(service, trained):
    assert trained["status"] == "succeeded", trained["error"]
    assert trained["attempts"] == 1 and trained["error"] is None
    assert trained["started_at"] and trained["finished_at"]
    steps = 2 * 47  # ceil(3000 / 64) steps an epoch
    assert trained["progress"] == {
        "epoch": 2,
        "epochs": 2,
        "step": steps,
        "steps": steps,
        "loss": pytest.approx(trained["progress"]["loss"]),
    }
    with service.client() as client:
        losses = client.get(f"/jobs/{trained['id']}/losses").json()["data"]
        epochs = client.get(f"/jobs/{trained['id']}/epochs").json()
        models = client.get("/models").json()
    assert [p["step"] for p in losses] == sorted(
        {1, *range(10, steps + 1, 10), 47, 94}
    )  # the first step, and each epoch's last
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[-1]["test_accuracy"] == trained["test_accuracy"]
    assert any(
        m["id"] == trained["id"] and m["test_accuracy"] == trained["test_accuracy"] for m in models["data"]
    )


def test_accuracy_and_confusion_matrices_agree(service, trained):
    with service.client() as client:
        accuracy = client.get(f"/models/{trained['id']}/accuracy").json()
        for split, size in (("test", 10_000), ("train", 3000)):
            cm = client.get(f"/models/{trained['id']}/confusion-matrix", params={"split": split}).json()
            matrix = np.array(cm["matrix"])
            assert cm["split"] == split and cm["labels"] == list(range(10)) and matrix.shape == (10, 10)
            assert matrix.sum() == size  # the train split is the train_limit images it was trained on
            assert np.trace(matrix) / matrix.sum() == pytest.approx(accuracy[split])
    assert 0 <= accuracy["train"] <= 1 and 0 <= accuracy["test"] <= 1
    assert accuracy["validation"] == trained["validation_accuracy"] > 0.8  # on the 5,000 held out
    assert accuracy["test"] > 0.8  # 3,000 images, 2 epochs of adam: far above chance


def test_per_image_prediction_and_uploads_agree(service, trained):
    model = trained["id"]
    with service.client() as client:
        check = client.get(f"/models/{model}/predictions/test/10").json()
        assert check["split"] == "test" and check["index"] == 10
        assert int(np.argmax(check["probabilities"])) == check["predicted"]
        assert check["correct"] == (check["predicted"] == check["label"])
        assert sum(check["probabilities"]) == pytest.approx(1, abs=1e-4)

        png = client.get("/datasets/mnist/test/10.png")
        assert png.headers["content-type"] == "image/png" and int(png.headers["x-label"]) == check["label"]
        pixels = np.asarray(Image.open(io.BytesIO(png.content)))
        assert pixels.shape == (28, 28)
        by_pixels = client.post(f"/models/{model}/predict", json={"pixels": pixels.tolist()}).json()
        assert by_pixels["predicted"] == check["predicted"]
        assert by_pixels["probabilities"] == pytest.approx(check["probabilities"], abs=1e-5)

        big = Image.fromarray(pixels).resize((280, 280), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        big.save(buf, format="PNG")
        uploaded = client.post(
            f"/models/{model}/predict", files={"file": ("digit.png", buf.getvalue(), "image/png")}
        )
        assert uploaded.status_code == 200, uploaded.text
        assert uploaded.json()["predicted"] == check["predicted"]
        raw = client.post(
            f"/models/{model}/predict", content=buf.getvalue(), headers={"content-type": "image/png"}
        )
        assert raw.json()["predicted"] == check["predicted"]

        many = client.post(f"/models/{model}/predict", json={"images": [pixels.ravel().tolist()] * 3}).json()
        assert many["count"] == 3 and {p["predicted"] for p in many["data"]} == {check["predicted"]}


def test_weights_download_is_the_documented_npz(service, trained):
    from service.ml.weights import load_weights

    with service.client() as client:
        response = client.get(f"/models/{trained['id']}/weights")
    assert response.status_code == 200
    weights = load_weights(response.content)
    assert weights.spec.hidden_layers == [64]
    assert [W.shape for W, _ in weights.params] == [(784, 64), (64, 10)]


def test_cancelling_a_running_job_ends_it_cancelled(service):
    with service.client() as client:
        # far longer than the cancel takes to reach the worker (one heartbeat), however fast the machine
        job = client.post("/jobs", json=SMALL | {"epochs": 200, "train_limit": 30000, "log_every": 5}).json()
        service.wait_job(client, job["id"], statuses=("running",), timeout=60)
        response = client.post(f"/jobs/{job['id']}/cancel")
        assert response.status_code == 200 and response.json()["cancel_requested"] is True
        final = service.wait_job(client, job["id"], timeout=30)
        assert final["status"] == "cancelled"
        assert final["progress"]["epoch"] < 200
        assert client.get(f"/models/{job['id']}/accuracy").status_code == 409
        again = client.post(f"/jobs/{job['id']}/cancel")
        assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
