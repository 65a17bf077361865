"""A real service for end-to-end tests: uvicorn and worker processes on a fresh database
(a temporary SQLite file; PostgreSQL too in modules marked ON_EVERY_DATABASE)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, real_data_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@dataclass
class Service:
    """The API process, its base URL, and the workers started for it."""

    root: Path
    env: dict[str, str]
    url: str
    api: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)

    def start_worker(self, *args: str, **env: str) -> subprocess.Popen:
        log = open(self.root / f"worker-{len(self.workers)}.log", "w")  # noqa: SIM115 - the worker writes to it
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers", *args],
            env=self.env | env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(proc)
        return proc

    def wait_job(
        self, client: httpx.Client, job_id: int, statuses=("succeeded", "failed", "cancelled"), timeout=120.0
    ) -> dict:
        def done():
            job = client.get(f"/jobs/{job_id}").json()
            return job if job["status"] in statuses else None

        return wait_for(done, timeout, f"job {job_id} to reach {statuses}", interval=0.2)

    def stop(self) -> None:
        for proc in [*self.workers, self.api]:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers, self.api]:
            if proc is not None:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()


def start_service(root: Path, db_url: str | None = None, **env: str) -> Service:
    port = free_port()
    environment = (
        {k: v for k, v in os.environ.items() if not k.startswith("MLPLAB_")}
        | {
            "MLPLAB_DATABASE_URL": db_url or f"sqlite:///{root / 'mlplab.db'}",
            "MLPLAB_DATA_DIR": str(real_data_dir()),
            "MLPLAB_DOWNLOAD": "false",
            "MLPLAB_WORKER_POLL_SECONDS": "0.2",
            "MLPLAB_HOST": "127.0.0.1",
            "MLPLAB_PORT": str(port),
            "PYTHONUNBUFFERED": "1",
        }
        | env
    )
    service = Service(root=root, env=environment, url=f"http://127.0.0.1:{port}")
    log = open(root / "api.log", "w")  # noqa: SIM115 - the API writes to it
    service.api = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "api"],
        env=environment,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def ready():
        if service.api.poll() is not None:
            raise AssertionError(
                f"the API exited with {service.api.returncode}: {(root / 'api.log').read_text()}"
            )
        try:
            return httpx.get(f"{service.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, 30, "the API to be ready")
    return service


@pytest.fixture(scope="module")
def service(tmp_path_factory, module_db_url):
    svc = start_service(tmp_path_factory.mktemp("service"), module_db_url)
    svc.start_worker()
    yield svc
    svc.stop()
