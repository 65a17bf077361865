"""What a prediction tells beside its class: the image the model saw, whether the input looks like
the training images, and a model's mistakes with the surest first."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from service.main import create_app
from service.ml.data import load_dataset
from service.settings import Settings
from service.store.db import make_engine, make_sessionmaker
from tests.conftest import assert_problem
from tests.factories import finished_jobs, learner_body
from tests.support import real_data_dir
from workers.worker import run_worker

SMALL = learner_body(
    epochs=2,
    train_limit=3000,
    batch_size=50,
)


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", real_data_dir(), download=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A client and the id of one model trained on 3,000 MNIST images."""
    root = tmp_path_factory.mktemp("predictions")
    settings = Settings(database_url=f"sqlite:///{root / 'api.db'}", data_dir=real_data_dir(), download=False)
    with TestClient(create_app(settings)) as client:
        job = client.post("/jobs", json=SMALL).json()["id"]
        run_worker(settings, once=True)
        assert client.get(f"/jobs/{job}").json()["status"] == "succeeded"
        yield client, job


def _png(gray: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(gray.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _upload(client, model: int, png: bytes) -> dict:
    response = client.post(f"/models/{model}/predict", files={"file": ("input.png", png, "image/png")})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_mistakes_it_is_surest_of_come_first(trained):
    client, model = trained
    matrix = np.array(
        client.get(f"/models/{model}/confusion-matrix", params={"split": "test"}).json()["matrix"]
    )
    wrong = int(matrix.sum() - np.trace(matrix))
    query = {"correct": "false", "order": "confidence", "limit": 500}
    page = client.get(f"/models/{model}/predictions/test", params=query).json()
    assert page["count"] == wrong > 0
    rows = page["data"]
    assert all(r["label"] != r["predicted"] for r in rows)
    confidences = [r["probability"] for r in rows]
    assert confidences == sorted(confidences, reverse=True) and confidences[0] > 0.5
    # the probability is the one the model gives the image, as the per-image check reports it
    surest = client.get(f"/models/{model}/predictions/test/{rows[0]['index']}").json()
    assert surest["probabilities"][surest["predicted"]] == pytest.approx(rows[0]["probability"], abs=1e-6)
    assert not surest["correct"]
    right = client.get(f"/models/{model}/predictions/test", params={"correct": "true", "limit": 1}).json()
    assert right["count"] + wrong == 10_000
    # within a confusion-matrix cell too, and by index unless asked
    cell = {"label": rows[0]["label"], "predicted": rows[0]["predicted"], "correct": "false"}
    by_index = client.get(f"/models/{model}/predictions/test", params=cell).json()["data"]
    assert [r["index"] for r in by_index] == sorted(r["index"] for r in by_index)
    problem = assert_problem(client.get(f"/models/{model}/predictions/test", params={"order": "worst"}), 422)
    assert "order" in problem["detail"]


def test_an_upload_comes_back_with_the_28x28_image_the_model_saw(trained, mnist):
    client, model = trained
    digit = mnist.test_images[0].reshape(28, 28)  # a 7
    big = np.kron(255 - digit * 255, np.ones((8, 8)))  # 224 x 224, dark ink on white paper
    answer = _upload(client, model, _png(big))
    seen = np.array(answer["pixels"])
    assert seen.shape == (784,) and seen.min() >= 0 and seen.max() == 255
    # made to look like MNIST: white ink on black, where the original's ink is
    assert np.corrcoef(seen, digit.ravel())[0, 1] > 0.8
    assert answer["out_of_distribution"] is False
    assert answer["warning"] is None or "unlike" not in answer["warning"]
    by_pixels = client.post(
        f"/models/{model}/predict", json={"pixels": (digit.ravel() * 255).tolist()}
    ).json()
    assert by_pixels["pixels"] == np.rint(digit.ravel() * 255).astype(int).tolist()  # JSON: sent as it came


def test_an_upload_of_two_file_parts_is_refused_not_answered_for_one_of_them(trained, mnist):
    """Two 'file' parts: the last answered (a digit then a blank: 422 blank; swapped: 200)."""
    client, model = trained
    digit = _png(255 - mnist.test_images[0].reshape(28, 28) * 255)
    blank = _png(np.full((28, 28), 255))
    files = [("file", ("a.png", digit, "image/png")), ("file", ("b.png", blank, "image/png"))]
    for order in (files, files[::-1]):
        problem = assert_problem(client.post(f"/models/{model}/predict", files=order), 422, "2 'file' parts")
        assert problem["invalid_params"][0]["name"] == "body.file"


def test_pixels_sent_scaled_to_0_1_are_told_to_take_0_255(trained, mnist):
    client, model = trained
    digit = mnist.test_images[0]  # a 7, its pixels in [0, 1] as a NumPy user holds them
    scaled = client.post(f"/models/{model}/predict", json={"pixels": digit.tolist()}).json()
    assert scaled["out_of_distribution"] is True and "pixels take 0-255" in scaled["warning"], scaled
    right = client.post(f"/models/{model}/predict", json={"pixels": (digit * 255).tolist()}).json()
    assert right["warning"] is None or "0-255" not in right["warning"]
    assert "0-255" not in (
        client.post(f"/models/{model}/predict", json={"pixels": [0] * 784}).json()["warning"] or ""
    )


def test_a_line_of_text_is_said_to_look_unlike_the_training_images(trained):
    client, model = trained
    page = Image.new("L", (120, 24), 255)
    ImageDraw.Draw(page).text((4, 6), "Hello world", fill=0)
    answer = _upload(client, model, _png(np.asarray(page)))
    assert answer["out_of_distribution"] is True
    assert 0 <= answer["predicted"] <= 9  # still answered: the warning says how far to trust it
    assert "looks unlike the training images" in answer["warning"] and "pixels tall" in answer["warning"]
    noise = np.random.default_rng(0).integers(0, 256, (64, 64))
    blot = _upload(client, model, _png(noise))
    assert blot["out_of_distribution"] is True and "ink mass" in blot["warning"]


def test_a_digit_off_centre_is_flagged_and_a_batch_is_measured_image_by_image(trained, mnist):
    client, model = trained
    digit = mnist.test_images[1].reshape(28, 28)
    corner = np.zeros((28, 28))
    corner[:20, :20] = digit[4:24, 4:24]
    images = [(digit * 255).ravel().tolist(), (corner * 255).ravel().tolist()]
    batch = client.post(f"/models/{model}/predict", json={"images": images}).json()["data"]
    assert [p["out_of_distribution"] for p in batch] == [False, True]
    assert "centre of mass" in batch[1]["warning"]
    assert all(p["pixels"] is None for p in batch)  # the inputs are not sent back in a batch


def test_without_the_training_images_a_prediction_says_nothing_of_its_input(tmp_path):
    url = f"sqlite:///{tmp_path / 'api.db'}"
    settings = Settings(database_url=url, data_dir=tmp_path / "no-data", download=False)
    with TestClient(create_app(settings)) as client:
        engine = make_engine(url)
        model = finished_jobs(make_sessionmaker(engine), 1).models[0]
        engine.dispose()
        answer = client.post(f"/models/{model}/predict", json={"pixels": [0] * 392 + [255] * 392})
        assert answer.status_code == 200, answer.text
        assert answer.json()["out_of_distribution"] is None and len(answer.json()["pixels"]) == 784


@pytest.mark.filterwarnings(
    "ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning"
)
def test_a_model_whose_outputs_overflow_is_a_409_not_null_probabilities():
    """A model stored before training checked its outputs: predict answered 200, every probability null."""
    import asyncio

    from service.api.inference import predict_proba
    from service.errors import ProblemError
    from service.ml.spec import TrainSpec
    from service.ml.weights import Weights

    spec = TrainSpec(backend="numpy", hidden_layers=[16, 16], activation="relu")
    sizes = [784, 16, 16, 10]
    params = [
        (np.full((m, n), 1e30, np.float32), np.zeros(n, np.float32))
        for m, n in zip(sizes, sizes[1:], strict=False)
    ]
    with pytest.raises(ProblemError) as refused:
        asyncio.run(predict_proba(Weights(spec, params), np.ones((1, 784), np.float32)))
    assert refused.value.status == 409 and "smaller learning_rate" in refused.value.detail


def test_the_validation_images_that_ranked_a_model_have_their_confusion_matrix_and_mistakes(trained):
    """Models are ranked on validation, yet its confusion matrix and mistakes could not be seen: the
    confusion matrix took train or test only."""
    client, model = trained
    stored = client.get(f"/models/{model}").json()
    cm = client.get(f"/models/{model}/confusion-matrix", params={"split": "validation"}).json()
    matrix = np.array(cm["matrix"])
    assert cm["split"] == "validation" and matrix.sum() == stored["validation_size"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(stored["validation_accuracy"])
    query = {"images": "validation", "correct": "false", "limit": 500}
    wrong = client.get(f"/models/{model}/predictions/train", params=query).json()
    assert wrong["count"] == matrix.sum() - np.trace(matrix)
    assert {row["use"] for row in wrong["data"]} == {"validation"}
    # the test file holds no validation image: said, not an empty page
    refused = client.get(f"/models/{model}/predictions/test", params={"images": "validation"})
    assert assert_problem(refused, 422, "ask split train")["invalid_params"][0]["name"] == "query.images"
    # as figures too: the matrix, and the mistakes
    for figure in ("confusion-matrix.png", "mistakes.png"):
        drawn = client.get(f"/models/{model}/{figure}", params={"split": "validation"})
        assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/png", figure
        assert drawn.content != client.get(f"/models/{model}/{figure}").content, figure


def test_a_model_without_a_validation_split_has_no_validation_matrix(tmp_path):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}", data_dir=real_data_dir(), download=False
    )
    with TestClient(create_app(settings)) as client:
        job = client.post("/jobs", json=SMALL | {"validation_size": 0, "epochs": 1}).json()["id"]
        run_worker(settings, once=True)
        asked = [
            (f"/models/{job}/confusion-matrix", {"split": "validation"}),
            (f"/models/{job}/confusion-matrix.png", {"split": "validation"}),
            (f"/models/{job}/mistakes.png", {"split": "validation"}),
            (f"/models/{job}/predictions/train", {"images": "validation"}),
        ]
        for path, query in asked:
            refused = client.get(path, params=query)
            problem = assert_problem(refused, 422, "has no validation split (validation_size 0)")
            assert problem["invalid_params"][0]["name"] == f"query.{next(iter(query))}", path


def test_a_validation_matrix_does_not_wait_on_itself_for_a_database_slot(tmp_path):
    """It held a session (a database slot) while its predictions' read asked for another: with one slot,
    GET confusion-matrix?split=validation hung for good."""
    import asyncio

    import httpx

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        data_dir=real_data_dir(),
        download=False,
        max_in_flight=1,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        job = client.post("/jobs", json=SMALL | {"epochs": 1}).json()["id"]
        run_worker(settings, once=True)

    async def ask() -> int:
        # asyncio's timeout cancels a hung request, which TestClient would wait on for good
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                path = f"/models/{job}/confusion-matrix?split=validation"
                return (await asyncio.wait_for(client.get(path), 30)).status_code

    assert asyncio.run(ask()) == 200


def test_a_media_type_is_read_whatever_its_case(trained, mnist):
    """An attacker's pass: 'Multipart/Form-Data' was decoded as one image, and refused as 'not a BMP, GIF,
    JPEG, PNG or WebP image'; 'Image/PNG' and 'Application/JSON' likewise read as what they name."""
    client, model = trained
    digit = mnist.test_images[0].reshape(28, 28)
    png = _png(np.kron(255 - digit * 255, np.ones((4, 4))))
    request = client.build_request(
        "POST", f"/models/{model}/predict", files={"file": ("d.png", png, "image/png")}
    )
    kind = request.headers["content-type"].replace("multipart/form-data", "Multipart/Form-Data")
    upper = client.post(f"/models/{model}/predict", content=request.read(), headers={"content-type": kind})
    assert upper.status_code == 200, upper.text
    lower = client.post(f"/models/{model}/predict", files={"file": ("d.png", png, "image/png")})
    assert upper.json()["probabilities"] == lower.json()["probabilities"]
    assert (
        client.post(
            f"/models/{model}/predict", content=png, headers={"content-type": "Image/PNG"}
        ).status_code
        == 200
    )
    pixels = json.dumps({"pixels": (digit.ravel() * 255).tolist()})
    assert (
        client.post(
            f"/models/{model}/predict", content=pixels, headers={"content-type": "Application/JSON"}
        ).status_code
        == 200
    )


def test_pixels_in_utf_16_are_a_400_naming_it(trained):
    """json.loads read UTF-16 and UTF-32 from bytes: answered, where JSON is UTF-8 (as every route says)."""
    client, model = trained
    sent = json.dumps({"pixels": [0] * 784}).encode("utf-16")
    response = client.post(
        f"/models/{model}/predict", content=sent, headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "it is UTF-16: JSON is UTF-8 (RFC 8259), send it so")
