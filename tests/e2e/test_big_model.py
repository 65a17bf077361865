"""The largest model the limits allow (19,992,727 parameters, 80 MB of float32) against a real API
process: twenty concurrent first requests load it once, its figures cost what they show, and downloads to
clients that stall hold little memory."""

from __future__ import annotations

import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from service.ml.spec import TrainSpec
from service.ml.weights import dump_weights
from service.store.db import make_engine, make_sessionmaker, migrate, session_scope
from service.store.jobs import claim_job, enqueue_job, finish_job
from tests.support import memory, start_service

pytestmark = pytest.mark.slow

HIDDEN = [4091, 4091]  # just under MLPLAB_MAX_PARAMETERS's default of 20,000,000
MB = 2**20


def _store_big_model(url: str) -> int:
    spec = TrainSpec.model_validate(
        {"backend": "numpy", "hidden_layers": HIDDEN, "epochs": 1, "validation_size": 0}
    )
    assert 19_900_000 < spec.n_parameters < 20_000_000
    rng = np.random.default_rng(0)
    sizes = spec.layer_sizes
    params = [
        ((rng.random((a, b), dtype=np.float32) - 0.5) * np.float32(2 / np.sqrt(a)), np.zeros(b, np.float32))
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    eye = np.eye(10, dtype=int).tolist()
    result = SimpleNamespace(
        weights=dump_weights(spec, params), train_accuracy=0.1, test_accuracy=0.1,
        validation_accuracy=None, confusion_train=eye, confusion_test=eye, best_epoch=1, stopped_epoch=1,
        predictions={}, seconds=1.0,
    )  # fmt: skip
    engine = make_engine(url)
    migrate(engine)
    factory = make_sessionmaker(engine)
    with session_scope(factory) as s:
        job_id = enqueue_job(s, spec).id
    with session_scope(factory) as s:
        claim_job(s, "w")
        finish_job(s, job_id, "w", result)
    engine.dispose()
    return job_id


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.fixture
def big(tmp_path):
    """A live API over a database holding the largest model: (the service, the model's id)."""
    url = f"sqlite:///{tmp_path / 'mlplab.db'}"
    model = _store_big_model(url)
    service = start_service(tmp_path, db_url=url)
    try:
        yield service, model
    finally:
        service.stop()
    log = (tmp_path / "api.log").read_text()
    assert "Traceback" not in log, log


def test_twenty_first_requests_for_the_largest_model_load_it_once(big):
    service, model = big
    with httpx.Client(base_url=service.url, timeout=120) as client:
        assert client.get("/datasets/mnist/test/0.png").status_code == 200  # the dataset, decoded first
        before = memory(service.api.pid)
        started = time.perf_counter()
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda i: client.get(f"/models/{model}/predictions/test/{i}"), range(20)))
        seconds = time.perf_counter() - started
        after = memory(service.api.pid)
        assert [a.status_code for a in answers] == [200] * 20, answers[0].text
        grown, peak = (after["VmRSS"] - before["VmRSS"]) / MB, (after["VmHWM"] - before["VmRSS"]) / MB
        print(f"20 first requests: {seconds:.1f} s; RSS +{grown:.0f} MB, peak +{peak:.0f} MB")
        # One copy of the weights (76 MB) is kept; loading it needs the stored bytes besides, once.
        assert grown < 200 and peak < 400, (grown, peak)

        cpu = _cpu_seconds(service.api.pid)
        figure = client.get(f"/models/{model}/mistakes.png", params={"split": "train"})
        assert figure.status_code == 200 and figure.headers["content-type"] == "image/png"
        again = client.get(f"/models/{model}/mistakes.png", params={"split": "train"})
        assert again.content == figure.content
        cpu = _cpu_seconds(service.api.pid) - cpu
        print(f"mistakes.png?split=train twice: {cpu:.1f} s of the API's CPU")
        assert cpu < 15  # predicting the whole train split took 43-52 s, every time


def _asking(url: str, path: str) -> socket.socket:
    """A client that asks for `path` and then reads nothing: its download waits on it."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return sock


def test_downloads_of_the_largest_model_to_clients_that_do_not_read_hold_little_memory(big):
    service, model = big
    with httpx.Client(base_url=service.url, timeout=120) as client:
        cpu = _cpu_seconds(service.api.pid)
        stored = client.get(f"/models/{model}/weights")
        cpu = _cpu_seconds(service.api.pid) - cpu
        print(f"\na download of {len(stored.content) / MB:.0f} MB of weights: {cpu:.1f} s of the API's CPU")
        # each 256-kB slice walked SQLite's overflow pages from the value's start: 4 s for 80 MB
        assert cpu < 2, cpu
        assert stored.status_code == 200 and int(stored.headers["content-length"]) == len(stored.content)
        graph = client.get(f"/models/{model}/model.onnx")
        assert graph.status_code == 200 and int(graph.headers["content-length"]) == len(graph.content)
        before = memory(service.api.pid)["VmRSS"]
        cpu = _cpu_seconds(service.api.pid)
        stalled = [_asking(service.url, f"/models/{model}/{name}") for name in ("weights", "model.onnx") * 8]
        try:
            time.sleep(3)
            grown = (memory(service.api.pid)["VmRSS"] - before) / MB
            cpu = _cpu_seconds(service.api.pid) - cpu
            print(
                f"16 stalled downloads of {len(stored.content) / MB:.0f} MB: RSS +{grown:.0f} MB, {cpu:.1f} s CPU"
            )
            # Each held its whole body (+0.9 GB within 3 s), and the ONNX graph was exported again for each;
            # now each holds at most a 4 MB slice and its chunk (16 x 4.25 MB), besides the connections' buffers
            assert grown < 250, grown
            assert cpu < 5, cpu
            again = client.get(f"/models/{model}/weights")  # served meanwhile, and the same bytes
            assert again.content == stored.content
            assert client.get(f"/models/{model}/model.onnx").content == graph.content
        finally:
            for sock in stalled:
                sock.close()
