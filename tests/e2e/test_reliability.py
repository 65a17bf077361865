"""Leases that outlive slow steps, and a worker stopped twice. Real processes throughout.

(A worker killed with SIGKILL or stopped with SIGTERM: tests/workers/test_worker.py.)
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.support import start_service, wait_for

pytestmark = pytest.mark.slow  # real API and worker processes: seconds each

# One full-batch step of 60,000 images through 1024 and 512 units: seconds each, longer than the lease.
FULL_BATCH = {"backend": "numpy", "hidden_layers": [1024, 512], "batch_size": 60000, "log_every": 1}


@pytest.fixture
def fast_leases(tmp_path):
    svc = start_service(tmp_path, MLPLAB_LEASE_SECONDS="3", MLPLAB_HEARTBEAT_SECONDS="0.5")
    yield svc
    svc.stop()


def test_a_step_longer_than_the_lease_keeps_its_worker(fast_leases):
    """One full-batch step takes longer than the 3 s lease; the heartbeat thread keeps it alive."""
    svc = fast_leases
    with svc.client() as client:
        job_id = client.post("/jobs", json=FULL_BATCH | {"epochs": 2}).json()["id"]
        svc.start_worker()
        svc.start_worker()  # a second worker that would gladly steal a stalled job
        final = svc.wait_job(client, job_id, timeout=240)
        assert final["status"] == "succeeded", final["error"]
        assert final["attempts"] == 1


def test_a_second_sigterm_exits_at_once(fast_leases):
    """The first SIGTERM waits for the running step to end; a second one does not wait."""
    svc = fast_leases
    with svc.client() as client:
        # full-batch steps of a few seconds each: the first signal alone would wait that long
        job_id = client.post("/jobs", json=FULL_BATCH | {"epochs": 3}).json()["id"]
        worker = svc.start_worker()
        wait_for(lambda: client.get(f"/jobs/{job_id}").json()["status"] == "running", 60, "the job to start")
        time.sleep(1.0)  # inside the first step
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        second = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(5) == 128 + signal.SIGTERM
        assert time.monotonic() - second < 1.0
        # gone without putting the job back: its lease runs out and another worker re-queues it
        svc.start_worker()
        final = svc.wait_job(client, job_id, timeout=240)
        assert final["status"] == "succeeded" and final["attempts"] == 2
