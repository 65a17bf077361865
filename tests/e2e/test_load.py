"""Concurrency: a burst of 200 requests while two workers write, and 200 writes at once.

Real processes: uvicorn, `python -m workers`, one SQLite file (WAL, busy timeout, BEGIN IMMEDIATE
for writes). "database is locked" must never reach a client or a log, and no write may be lost.
The burst runs on PostgreSQL too, whose default max_connections (100) it would pass if the API
opened a connection per request in flight. (Claims racing for a job: tests/store/test_jobs.py;
four workers and a SIGKILL: test_postgres_scale.py.)
"""

from __future__ import annotations

import asyncio
import collections
import random
import threading
import time
from contextlib import contextmanager

import httpx
import pytest

from service.api.database import READERS
from service.main import READYZ_CONNECTIONS
from tests.conftest import LEAKS
from tests.factories import job_body
from tests.support import Service, start_service, wait_for

pytestmark = pytest.mark.slow  # real API and worker processes: seconds each

# BLAS and torch on one thread each: 2-4 workers on a 2-core runner must not oversubscribe it.
ONE_THREAD = {
    "MLPLAB_WORKER_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
TINY = job_body(log_every=1)  # 8 steps
# What no response may show: a traceback or a path of the installation.
# 5,000 steps, a loss recorded for each: several seconds, so both workers are mid-job when the burst comes.
BUSY = {
    "backend": "numpy",
    "hidden_layers": [512, 256],
    "epochs": 2,
    "train_limit": 40000,
    "batch_size": 16,
    "log_every": 1,
}


def logs(svc: Service) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(svc.root.glob("*.log"))}


def assert_every_job_trained_once_with_all_its_losses(client: httpx.Client, jobs: list[dict]) -> None:
    for job in jobs:
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 1, job
        steps = job["progress"]["steps"]
        losses = client.get(f"/jobs/{job['id']}/losses", params={"limit": 10_000}).json()["data"]
        # log_every 1: one row per step, each once - nothing lost, nothing written twice
        assert [p["step"] for p in losses] == list(range(1, steps + 1)), job["id"]


@pytest.fixture
def busy_service(tmp_path, db_url):
    svc = start_service(tmp_path, db_url, MLPLAB_MAX_QUEUED="100000", MLPLAB_HEARTBEAT_SECONDS="0.5")
    yield svc
    svc.stop()


def fire_at_once(
    url: str, requests: list[tuple[str, str, dict | None]]
) -> tuple[list[httpx.Response], float]:
    """Send every (method, path, json) at the same time, one connection each; the responses and the seconds taken."""

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            return await asyncio.gather(
                *(client.request(method, path, json=body) for method, path, body in requests)
            )

    started = time.monotonic()
    responses = asyncio.run(burst())
    return responses, time.monotonic() - started


@contextmanager
def peak_connections(db_url: str):
    """The most connections to db_url's PostgreSQL database seen while the block ran (sampled); SQLite: None."""
    if not db_url.startswith("postgresql"):
        yield lambda: None
        return
    from sqlalchemy import create_engine, text

    engine = create_engine(
        db_url, isolation_level="AUTOCOMMIT"
    )  # a transaction would see one snapshot of the stats
    peak, done = [0], threading.Event()

    def sample() -> None:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
            while not done.is_set():
                peak[0] = max(peak[0], conn.execute(query).scalar_one() - 1)  # not this connection
                done.wait(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield lambda: peak[0]
    finally:
        done.set()
        sampler.join()
        engine.dispose()


def test_200_concurrent_requests_while_two_workers_write_progress(busy_service, db_url):
    """Reads, submissions and predictions at once, while two workers record a loss every step."""
    svc = busy_service
    with svc.client() as client:
        model = client.post("/jobs", json=TINY).json()["id"]
        svc.start_worker(**ONE_THREAD)
        assert svc.wait_job(client, model, timeout=60)["status"] == "succeeded"
        busy = [client.post("/jobs", json=BUSY | {"seed": s}).json()["id"] for s in range(4)]
        svc.start_worker(**ONE_THREAD)
        wait_for(
            lambda: client.get("/jobs", params={"status": "running"}).json()["count"] == 2,
            30,
            "both workers to be training",
        )
        before = client.get("/jobs").json()["count"]

    pixels = [random.Random(i).randrange(256) for i in range(784)]
    requests = (
        [("GET", "/jobs", None)] * 25
        + [("GET", f"/jobs/{busy[i % 4]}", None) for i in range(25)]
        + [("GET", f"/jobs/{busy[i % 4]}/losses", None) for i in range(25)]
        + [("GET", "/models", None)] * 15
        + [("GET", f"/models/{model}/accuracy", None)] * 10
        + [("POST", "/jobs", TINY | {"seed": 100 + i}) for i in range(40)]
        + [("POST", f"/models/{model}/predict", {"pixels": pixels})] * 50
        + [("POST", f"/models/{model}/predict", {"images": [pixels] * 20})] * 10
    )
    assert len(requests) == 200
    random.Random(0).shuffle(requests)

    with peak_connections(db_url) as peak:
        responses, seconds = fire_at_once(svc.url, requests)
    statuses = collections.Counter(r.status_code for r in responses)
    print(
        f"\n200 concurrent requests in {seconds:.1f} s while two workers trained: statuses {dict(statuses)}, "
        f"peak database connections {peak()}"
    )
    if peak() is not None:  # 95 before the cap
        # The API's sessions (MLPLAB_MAX_IN_FLIGHT 32 + /readyz's), its polled reads' own pool, each worker's 2
        assert peak() <= 32 + READYZ_CONNECTIONS + READERS + 2 * 2, peak()
    assert all(200 <= r.status_code < 300 for r in responses), [
        (r.request.url, r.status_code, r.text[:300]) for r in responses if r.status_code >= 300
    ]
    assert not [r.text for r in responses if "locked" in r.text.lower()]
    assert not [r.text for r in responses if LEAKS.search(r.text)]
    submitted = [r.json()["id"] for r in responses if r.request.method == "POST" and r.status_code == 202]
    assert len(submitted) == 40 and len(set(submitted)) == 40

    with svc.client() as client:
        assert client.get("/jobs").json()["count"] == before + 40  # every submission stored, once
        finals = [svc.wait_job(client, job_id, timeout=60) for job_id in [model, *busy, *submitted]]
        assert_every_job_trained_once_with_all_its_losses(client, finals)
    for name, text in logs(svc).items():
        assert "locked" not in text.lower(), f"{name}: {text[-3000:]}"
        assert "heartbeat failed" not in text and "database error" not in text, f"{name}: {text[-3000:]}"


def test_100_submissions_and_100_cancels_at_once(tmp_path):
    """Writes only, all at once: each takes SQLite's write lock; none may wait on another for a thread."""
    svc = start_service(tmp_path, MLPLAB_MAX_QUEUED="100000")
    try:
        with svc.client() as client:
            queued = [client.post("/jobs", json=TINY | {"seed": s}).json()["id"] for s in range(100)]
        requests = [("POST", "/jobs", TINY)] * 100 + [
            ("POST", f"/jobs/{job_id}/cancel", None) for job_id in queued
        ]
        random.Random(1).shuffle(requests)

        responses, seconds = fire_at_once(svc.url, requests)
        print(f"\n100 submissions and 100 cancels at once, answered in {seconds:.1f} s")
        assert sorted(r.status_code for r in responses) == [200] * 100 + [202] * 100, collections.Counter(
            r.status_code for r in responses
        )
        assert seconds < 20, seconds  # a lock held across a thread hop stalled them for the 30 s busy timeout
        with svc.client() as client:
            assert client.get("/jobs", params={"status": "cancelled"}).json()["count"] == 100
            assert client.get("/jobs", params={"status": "queued"}).json()["count"] == 100
        assert "locked" not in (tmp_path / "api.log").read_text()
    finally:
        svc.stop()
