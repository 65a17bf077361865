"""`mlplab export MODEL`: a model's weights or ONNX graph in a file, as the API serves them; the newcomer
had only curl or the dashboard's buttons for it."""

from __future__ import annotations

import os
import stat
import threading

import httpx
import numpy as np
import onnxruntime

from service.api.schemas import MODEL_ID_HEADER
from service.ml.weights import load_weights
from tests.cli.conftest import mlplab
from tests.factories import job_body


def _trained(api) -> int:
    job = api.post("/jobs", json=job_body())["id"]
    api.train()
    api.client.put("/aliases/champion", json={"model_id": job})
    return job


def test_export_writes_the_weights_and_the_onnx_graph_the_api_serves(api, capsys, tmp_path, monkeypatch):
    job = _trained(api)
    tmp_path = tmp_path / "out"  # beside the API's database
    tmp_path.mkdir()
    monkeypatch.chdir(tmp_path)
    status, out, err = mlplab(capsys, "export", "champion")
    assert (status, out) == (0, ""), err
    written = (tmp_path / f"mlplab-model-{job}.npz").read_bytes()
    assert written == api.client.get(f"/models/{job}/weights").content
    assert err == f"model {job} (champion): {len(written):,} bytes of npz to mlplab-model-{job}.npz\n"
    assert load_weights(written).spec.epochs == job_body()["epochs"]

    status, _, err = mlplab(capsys, "export", str(job), "--format", "onnx", "-o", "net.onnx")
    assert status == 0 and err.endswith(" bytes of onnx to net.onnx\n"), err
    images = np.random.default_rng(0).random((3, 784), dtype=np.float32)
    onnx = onnxruntime.InferenceSession(str(tmp_path / "net.onnx")).run(
        ["probabilities"], {"images": images}
    )[0]
    assert np.allclose(onnx, load_weights(written).predict_proba(images), atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"mlplab-model-{job}.npz", "net.onnx"]  # no .part
    (tmp_path / "models").mkdir()
    status, _, err = mlplab(capsys, "export", "champion", "-o", "models")  # a folder: the file goes in it
    assert status == 0 and (tmp_path / "models" / f"mlplab-model-{job}.npz").read_bytes() == written, err
    pipe = tmp_path / "pipe"  # a FIFO (or /dev/null) is written into, not renamed over
    os.mkfifo(pipe)
    read: list[bytes] = []
    reader = threading.Thread(
        target=lambda: read.append(pipe.read_bytes()), daemon=True
    )  # a failed export never opens it
    reader.start()
    status, _, err = mlplab(capsys, "export", "champion", "-o", str(pipe))
    reader.join(timeout=10)
    assert status == 0 and read == [written] and stat.S_ISFIFO(pipe.stat().st_mode), err


def test_export_names_no_file_after_a_header_it_cannot_trust(elsewhere, capsys, tmp_path, monkeypatch):
    """A server that is not mlplab's: its x-model-id would have named the file (../../x)."""
    headers = {MODEL_ID_HEADER: "../../x", "content-type": "application/octet-stream"}
    elsewhere(lambda request: httpx.Response(200, content=b"PK", headers=headers))
    monkeypatch.chdir(tmp_path)
    status, _, err = mlplab(capsys, "--url", "http://api.test", "export", "7")
    assert status == 1 and "is it an mlplab API" in err and list(tmp_path.iterdir()) == [], err


def test_export_of_what_is_no_model_writes_nothing_and_says_why(api, capsys, tmp_path, monkeypatch):
    queued = api.post("/jobs", json=job_body())["id"]
    tmp_path = tmp_path / "out"  # beside the API's database
    tmp_path.mkdir()
    monkeypatch.chdir(tmp_path)
    for model, says in [
        ("999", "There is no model 999"),
        (str(queued), "queued"),
        ("nobody", "no alias nobody"),
        ("0", "MODEL: Input should be a model id, an integer from 1 to 2,147,483,647"),  # named as typed
    ]:
        status, out, err = mlplab(capsys, "export", model)
        assert (status, out) == (1, "") and says in err, err
    status, _, err = mlplab(capsys, "export", " ")
    assert status == 2 and "MODEL is blank" in err
    assert list(tmp_path.iterdir()) == []
