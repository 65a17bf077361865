"""What tests need around the code under test: paths, free ports, waiting, and a real service
(a uvicorn process and worker processes on a fresh database) for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from service.store.models import FINISHED

REPO = Path(__file__).resolve().parent.parent


def real_data_dir() -> Path:
    """MLPLAB_DATA_DIR, else ../shared/data beside the checkout (where CI lays the MNIST files)."""
    return Path(os.environ.get("MLPLAB_DATA_DIR") or REPO.parent / "shared" / "data").resolve()


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A Prometheus scrape as {(name, sorted labels): value}, parsed by prometheus_client's own parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def memory(pid: int) -> dict[str, int]:
    """The process's resident memory now (VmRSS) and at its peak (VmHWM), in bytes, from /proc."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {
        k: int(v.split()[0]) * 1024
        for k, v in (line.split(":", 1) for line in lines)
        if k in ("VmRSS", "VmHWM")
    }


def reset_peak(pid: int) -> None:
    """From now, the process's VmHWM measures the peak since this call (Linux 4.0+)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def environment_without_settings() -> dict[str, str]:
    """This process's environment less every setting (MLPLAB_ variables, and PROMETHEUS_MULTIPROC_DIR, which
    Settings.metrics_dir reads too): a child process sees only the test's settings."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("MLPLAB_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    predicate: Callable[[], Any], timeout: float = 20, what: str = "the condition", interval: float = 0.1
) -> Any:
    """Poll `predicate` until it returns something truthy, and return that; fail after `timeout` seconds."""
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
    api_args: Sequence[str] = ()  # `mlplab api`'s arguments, kept for a restart
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
        self, client: httpx.Client, job_id: int, statuses: Collection[str] = FINISHED, timeout: float = 120.0
    ) -> dict:
        """The job as GET /jobs/{id} shows it once its status is one of `statuses` (by default: finished)."""

        def done():
            job = client.get(f"/jobs/{job_id}").json()
            return job if job["status"] in statuses else None

        return wait_for(done, timeout, f"job {job_id} to be {' or '.join(sorted(statuses))}", interval=0.2)

    def start_api(self, timeout: float = 30) -> subprocess.Popen:
        """`mlplab api` on this service's port and database (again, after a kill), once it is ready."""
        log = open(self.root / "api.log", "a")  # noqa: SIM115 - the API writes to it
        api = self.api = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "api", *self.api_args],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def ready():
            if api.poll() is not None:
                raise AssertionError(
                    f"the API exited with {api.returncode}: {(self.root / 'api.log').read_text()}"
                )
            try:
                return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout, "the API to be ready")
        return api

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


def start_service(
    root: Path, db_url: str | None = None, host: str = "127.0.0.1", api_args: Sequence[str] = (), **env: str
) -> Service:
    """`mlplab api [api_args]` on a free port of `host` with its database under `root` (or `db_url`), ready;
    no worker yet."""
    port = free_port()
    environment = (
        environment_without_settings()
        | {
            "MLPLAB_DATABASE_URL": db_url or f"sqlite:///{root / 'mlplab.db'}",
            "MLPLAB_DATA_DIR": str(real_data_dir()),
            "MLPLAB_DOWNLOAD": "false",
            "MLPLAB_WORKER_POLL_SECONDS": "0.2",
            "MLPLAB_HOST": host,
            "MLPLAB_PORT": str(port),
            "PYTHONUNBUFFERED": "1",
        }
        | env
    )
    service = Service(root=root, env=environment, url=f"http://{host}:{port}", api_args=api_args)
    service.start_api()
    return service
