"""Bad predict inputs and bad training runs against a real server with a trained model.

Each bad request gets its 4xx as problem+json, a message naming what is wrong (and the limit),
and changes nothing: the job count and the model list are the same afterwards. (A job whose data
directory is missing is tests/workers/test_worker.py::test_a_failing_job_is_recorded_and_the_worker_goes_on.)
"""

from __future__ import annotations

import io
import json
import re
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from service.imaging import DECODES_PER_CLIENT
from tests.conftest import assert_problem
from tests.factories import job_body
from tests.support import memory, reset_peak, start_service

pytestmark = pytest.mark.slow  # real API and worker processes: seconds each

LIMIT = 100_000  # MLPLAB_MAX_UPLOAD_BYTES for this server
BODY_LIMIT = 10_000  # MLPLAB_MAX_BODY_BYTES: every other route's
MAX_IMAGES = 5  # MLPLAB_MAX_BATCH_IMAGES
TINY = job_body()


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    svc = start_service(
        tmp_path_factory.mktemp("uploads"),
        MLPLAB_MAX_UPLOAD_BYTES=str(LIMIT),
        MLPLAB_MAX_BODY_BYTES=str(BODY_LIMIT),
        MLPLAB_MAX_BATCH_IMAGES=str(MAX_IMAGES),
        MLPLAB_HEARTBEAT_SECONDS="0.5",
    )
    svc.start_worker(MLPLAB_WORKER_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def client(svc):
    with svc.client() as client:
        yield client


@pytest.fixture(scope="module")
def model(svc, client) -> int:
    job = client.post("/jobs", json=TINY).json()
    assert svc.wait_job(client, job["id"], timeout=60)["status"] == "succeeded"
    return job["id"]


def state(client: httpx.Client) -> tuple[int, list[int]]:
    return client.get("/jobs").json()["count"], [m["id"] for m in client.get("/models").json()["data"]]


def refused(client: httpx.Client, model: int, status: int, *says: str, **request) -> dict:
    """POST the request to /models/{model}/predict: `status`, problem+json saying `says`, nothing changed."""
    before = state(client)
    body = assert_problem(client.post(f"/models/{model}/predict", **request), status, *says)
    assert state(client) == before
    return body


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def noise_png(nbytes: int) -> bytes:
    """A valid PNG of incompressible noise, at least `nbytes` long."""
    side = int((nbytes * 1.1) ** 0.5) + 1
    return png(Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side), dtype=np.uint8)))


def bomb_png(width: int, height: int) -> bytes:
    """A few hundred bytes declaring a huge 1-bit image; decoding it would need width*height/8 bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000, 9))
        + chunk(b"IEND", b"")
    )


# --- size -------------------------------------------------------------------------------------


def _chunks(data: bytes, size: int = 16_384):
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("kind", ["json", "png", "multipart", "chunked"])
def test_a_body_over_the_upload_limit_is_413_naming_the_limit(client, model, kind):
    big = noise_png(LIMIT + 1)
    assert len(big) > LIMIT
    request = {
        "json": {"json": {"images": [[255] * 784] * 50}},  # ~150 kB of JSON
        "png": {"content": big, "headers": {"content-type": "image/png"}},
        "multipart": {"files": {"file": ("digit.png", big, "image/png")}},
        "chunked": {"content": _chunks(big), "headers": {"content-type": "image/png"}},  # no Content-Length
    }[kind]
    body = refused(client, model, 413, "100,000 bytes", "MLPLAB_MAX_UPLOAD_BYTES", **request)
    assert body["title"] == "Content too large"


def test_predict_has_its_own_limit_above_every_other_routes(client, model):
    images = {"images": [[255] * 784] * MAX_IMAGES}
    assert BODY_LIMIT < len(json.dumps(images)) < LIMIT
    assert client.post(f"/models/{model}/predict", json=images).json()["count"] == MAX_IMAGES
    padded = b'{"backend": "numpy"' + b" " * BODY_LIMIT + b"}"
    before = state(client)
    response = client.post("/jobs", content=padded, headers={"content-type": "application/json"})
    assert_problem(response, 413, "10,000 bytes", "MLPLAB_MAX_BODY_BYTES")
    assert state(client) == before


# --- not an image -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data,says",
    [
        (b"", "empty"),
        (b"hello, this is a text file and not a picture\n" * 10, "JPEG, PNG or WebP image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, "JPEG, PNG or WebP image"),  # a PNG signature, then garbage
        (noise_png(20_000)[:400], "cannot be decoded"),  # a good header, the pixel data cut short
    ],
)
@pytest.mark.parametrize("as_multipart", [False, True], ids=["raw", "multipart"])
def test_an_upload_that_is_not_an_image_is_422(client, model, data, says, as_multipart):
    request = (
        {"files": {"file": ("digit.png", data, "image/png")}}
        if as_multipart
        else {"content": data, "headers": {"content-type": "image/png"}}
    )
    body = refused(client, model, 422, says, **request)
    assert body["title"] == "Invalid image"
    assert [p["name"] for p in body["invalid_params"]] == ["body.file" if as_multipart else "body"]


def test_a_multipart_upload_without_a_file_part_is_422(client, model):
    refused(client, model, 422, "'file' part", files={"picture": ("digit.png", b"x", "image/png")})


def test_a_multipart_body_cut_short_or_a_file_part_without_filename_says_so(client, model):
    """Both read 'needs a file part' although the part was there."""
    head = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\nContent-Type: image/png\r\n\r\n'
    typed = {"content-type": "multipart/form-data; boundary=XyZ"}
    refused(
        client, model, 422, "before its closing boundary --XyZ--", content=head + b"\x89PNG", headers=typed
    )
    refused(client, model, 422, "has no filename, so it reads as text", files={"file": (None, b"\x89PNG")})


@pytest.mark.parametrize("side", [3000, 100_000])
def test_a_decompression_bomb_is_422_without_being_decoded(client, model, side):
    data = bomb_png(side, side)
    assert len(data) < 200
    started = time.monotonic()
    refused(client, model, 422, "4,000,000 pixels", content=data, headers={"content-type": "image/png"})
    # Decoding 100,000 x 100,000 pixels would take 1.25 GB and seconds; refusing it takes milliseconds.
    assert time.monotonic() - started < 2
    assert client.get("/healthz").status_code == 200


def test_many_large_uploads_at_once_are_all_answered_and_the_api_stays_small(svc, client, model):
    """40 uploads at once of a 17 KB PNG that decodes to 2000 x 2000 RGBA (the pixel limit): each was
    about 160 MB of float arrays, all decoded together (3.8 GB); now a few at a time, in place."""
    canvas = np.zeros((2000, 2000, 4), np.uint8)
    canvas[500:1500, 900:1100, 3] = 255  # a "1" drawn on a transparent canvas
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG")
    data = buffer.getvalue()
    assert len(data) < LIMIT
    small = client.post(f"/models/{model}/predict", json={"pixels": [0] * 784})
    assert small.status_code == 200  # the model and its input profile loaded: not counted below
    pid = svc.api.pid
    before = memory(pid)["VmRSS"]
    reset_peak(pid)

    def predict(i: int) -> httpx.Response:
        # two from each of 20 addresses: one client's share of the decoding turns is 2 (its third a 429)
        transport = httpx.HTTPTransport(local_address=f"127.0.0.{2 + i // DECODES_PER_CLIENT}")
        with httpx.Client(base_url=svc.url, timeout=120, transport=transport) as c:
            return c.post(f"/models/{model}/predict", content=data, headers={"content-type": "image/png"})

    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(predict, range(40)))
    assert {a.status_code for a in answers} == {200} and {a.json()["predicted"] for a in answers} == {1}
    grown = memory(pid)["VmHWM"] - before
    assert grown < 400e6, f"the API grew {grown / 1e6:.0f} MB"


# --- JSON pixels ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,name,says",
    [
        ('{"pixels": [' + ", ".join(["0"] * 783) + "]}", "body.pixels", "784 values"),
        ('{"pixels": [' + ", ".join(["0"] * 785) + "]}", "body.pixels", "784 values"),
        ('{"pixels": [' + ", ".join(["[0]"] * 28) + "]}", "body.pixels", "row 0 has 1 values"),
        ('{"pixels": [256' + ", 0" * 783 + "]}", "body.pixels", "pixel 0 is 256.0: values must be in 0-255"),
        ('{"pixels": [0, -1' + ", 0" * 782 + "]}", "body.pixels", "pixel 1 is -1.0"),
        (
            '{"pixels": [0, 0, NaN' + ", 0" * 781 + "]}",
            "body.pixels",
            "pixel 2 is NaN",
        ),  # Python's json reads NaN
        (
            '{"pixels": [Infinity' + ", 0" * 783 + "]}",
            "body.pixels",
            "pixel 0 is Infinity: values must be finite",
        ),
        ('{"pixels": [-Infinity' + ", 0" * 783 + "]}", "body.pixels", "pixel 0 is -Infinity"),
        ('{"pixels": ["12"' + ", 0" * 783 + "]}", "body.pixels", "pixels must be numbers"),
        ('{"pixels": 7}', "body.pixels", "a list of 784 numbers"),
        ('{"images": [[' + ", ".join(["0"] * 784) + "], [1, 2]]}", "body.images.1", "784 values"),
        (
            '{"images": [' + ", ".join(["[" + ", ".join(["0"] * 784) + "]"] * (MAX_IMAGES + 1)) + "]}",
            "body.images",
            f"{MAX_IMAGES + 1} images; the limit is {MAX_IMAGES} (MLPLAB_MAX_BATCH_IMAGES)",
        ),
        ('{"images": []}', "body.images", "non-empty list"),
        ('{"pixels": [0], "images": [[0]]}', "body", "exactly one of"),
        # an extra field was "send exactly one of", though one was sent
        (
            '{"pixels": [' + ", ".join(["0"] * 784) + '], "zzz": 3}',
            "body.zzz",
            "not a field: send exactly one of",
        ),
    ],
)
def test_bad_json_pixels_are_422_naming_the_pixel(client, model, text, name, says):
    body = refused(client, model, 422, says, content=text, headers={"content-type": "application/json"})
    assert [p["name"] for p in body["invalid_params"]] == [name]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"pixels": ' * 2000 + "0" + "}" * 2000, "nested too deeply"),
        ("{not json", "not valid JSON at character 2: Expecting property name"),
        (b"\x1f\x8b\x08\x00", "is not UTF-8 (byte 2)"),  # a gzip body
        ('{"pixels": [0], "pixels": [' + ", ".join(["0"] * 784) + "]}", "'pixels' is given twice"),
        (
            json.dumps({f"k{i}": 0 for i in range(1001)}),
            "an object has 1,001 keys; none here takes more than 1,000",
        ),
    ],
)
def test_json_that_cannot_be_read_is_a_400_as_on_every_json_route(client, model, text, says):
    """It was a 422 here and a 400 on /jobs, /sweeps and PUT /aliases."""
    body = refused(client, model, 400, says, content=text, headers={"content-type": "application/json"})
    assert [p["name"] for p in body["invalid_params"]] == ["body"]


def test_a_body_without_a_content_type_is_a_415_and_no_body_a_422_as_on_every_json_route(client, model):
    """An image sent with no Content-Type was read as JSON ('not UTF-8', a 400: /jobs says 415), and an
    empty JSON body was 'not valid JSON at character 1' (/jobs: 'Field required', a 422)."""
    image = png(Image.new("L", (28, 28)))
    said = refused(client, model, 415, "Content-Type missing: send application/json", content=image)
    assert said["title"] == "Unsupported media type"
    for sent in ({"content": b""}, {"content": b"", "headers": {"content-type": "application/json"}}):
        said = refused(client, model, 422, "body: Field required: send exactly one of", **sent)
        assert [p["name"] for p in said["invalid_params"]] == ["body"]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded"]
)
def test_an_unknown_content_type_is_415(client, model, content_type):
    body = refused(
        client,
        model,
        415,
        repr(content_type),
        "application/json",
        content=b"0,0,0",
        headers={"content-type": content_type},
    )
    assert body["title"] == "Unsupported media type"
    assert all(kind in body["detail"] for kind in ("image/png", "image/gif", "image/webp")), (
        body
    )  # all it reads


# --- models that are not (yet) models ---------------------------------------------------------


def test_predicting_from_a_model_still_training_is_409(svc, client, model):
    job = client.post(
        "/jobs", json=TINY | {"hidden_layers": [256], "epochs": 50, "train_limit": 20000, "batch_size": 8}
    ).json()
    try:
        svc.wait_job(client, job["id"], statuses=("running",), timeout=60)
        body = refused(client, job["id"], 409, f"Job {job['id']} is running", json={"pixels": [0] * 784})
        assert body["title"] == "Model not trained"
        assert_problem(client.get(f"/models/{job['id']}/accuracy"), 409, "running")
    finally:
        client.post(f"/jobs/{job['id']}/cancel")
    assert svc.wait_job(client, job["id"], timeout=30)["status"] == "cancelled"


def test_a_diverging_loss_fails_the_job_naming_epoch_step_and_rate_and_stores_no_model(svc, client, model):
    # relu at learning rate 10 blows the default 784-500-250-100 network up within a few steps
    # (sigmoid would saturate instead: its loss stays finite).
    models_before = state(client)[1]
    job = client.post(
        "/jobs", json={"backend": "numpy", "activation": "relu", "learning_rate": 10, "train_limit": 6400}
    ).json()
    final = svc.wait_job(client, job["id"], timeout=60)
    assert final["status"] == "failed", final
    assert re.search(r"diverged: .* at epoch 1, step \d+ \(learning rate 10\)", final["error"]), final[
        "error"
    ]
    assert "Traceback" not in final["error"]
    assert final["train_accuracy"] is None and final["test_accuracy"] is None
    assert_problem(client.get(f"/models/{job['id']}/accuracy"), 409, "failed")
    assert_problem(client.get(f"/models/{job['id']}/weights"), 409, "failed")
    assert_problem(client.post(f"/models/{job['id']}/predict", json={"pixels": [0] * 784}), 409, "failed")
    assert state(client)[1] == models_before
    # the worker goes on: the next job trains
    after = client.post("/jobs", json=TINY | {"seed": 3}).json()
    assert svc.wait_job(client, after["id"], timeout=60)["status"] == "succeeded"
