"""Nothing lost: crashed and stopped workers, leases that outlive slow steps. Real processes throughout."""

from __future__ import annotations

import io
import signal
import time

import numpy as np
import pytest

from tests.support import start_service, wait_for

# Long enough per epoch (about 2-4 s here) to kill a worker in the middle of one.
JOB = {
    "backend": "numpy",
    "activation": "relu",
    "init": "he",
    "optimizer": "adam",
    "learning_rate": 0.001,
    "epochs": 3,
    "train_limit": 30000,
    "log_every": 20,
    "seed": 7,
}


@pytest.fixture
def fast_leases(tmp_path):
    svc = start_service(tmp_path, MLPLAB_LEASE_SECONDS="3", MLPLAB_HEARTBEAT_SECONDS="0.5")
    yield svc
    svc.stop()


def _arrays(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob)) as z:
        return {k: z[k] for k in z.files if k[0] in "Wb"}


def test_kill_9_mid_epoch_resumes_from_the_checkpoint(fast_leases, mnist):
    svc = fast_leases
    with svc.client() as client:
        job_id = client.post("/jobs", json=JOB).json()["id"]
        first = svc.start_worker()
        wait_for(lambda: len(client.get(f"/jobs/{job_id}/epochs").json()) >= 1, 120, "epoch 1 to finish")
        first.send_signal(signal.SIGKILL)
        first.wait(5)
        at_kill = client.get(f"/jobs/{job_id}").json()
        assert at_kill["status"] == "running" and at_kill["progress"]["epoch"] < 3

        svc.start_worker()
        final = svc.wait_job(client, job_id, timeout=120)
        assert final["status"] == "succeeded", final["error"]
        assert final["attempts"] == 2
        epochs = client.get(f"/jobs/{job_id}/epochs").json()
        assert [e["epoch"] for e in epochs] == [1, 2, 3]
        weights = client.get(f"/models/{job_id}/weights").content

    # The same spec trained without interruption, here: NumPy is bit-reproducible, so equal.
    from service.ml.spec import TrainSpec
    from service.ml.train import train

    reference = train(TrainSpec.model_validate(JOB), mnist)
    assert final["test_accuracy"] == reference.test_accuracy
    assert final["train_accuracy"] == reference.train_accuracy
    ours, theirs = _arrays(weights), _arrays(reference.weights)
    assert all(np.array_equal(ours[k], theirs[k]) for k in theirs)


def test_sigterm_puts_the_job_back_and_another_worker_finishes_it(fast_leases):
    svc = fast_leases
    with svc.client() as client:
        job_id = client.post("/jobs", json=JOB | {"epochs": 2}).json()["id"]
        first = svc.start_worker()
        wait_for(
            lambda: (client.get(f"/jobs/{job_id}").json()["progress"]["step"] or 0) > 0,
            60,
            "training to start",
        )
        stopped_at = time.monotonic()
        first.send_signal(signal.SIGTERM)
        wait_for(
            lambda: client.get(f"/jobs/{job_id}").json()["status"] == "queued", 5, "the job to be re-queued"
        )
        assert first.wait(5) == 0
        assert time.monotonic() - stopped_at < 5

        svc.start_worker()
        final = svc.wait_job(client, job_id, timeout=120)
        assert final["status"] == "succeeded", final["error"]


def test_a_step_longer_than_the_lease_keeps_its_worker(fast_leases):
    """One full-batch step takes longer than the 3 s lease; the heartbeat thread keeps it alive."""
    svc = fast_leases
    with svc.client() as client:
        job_id = client.post(
            "/jobs",
            json={
                "backend": "numpy",
                "hidden_layers": [1024, 512],
                "batch_size": 60000,
                "epochs": 2,
                "log_every": 1,
            },
        ).json()["id"]
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
        job_id = client.post(
            "/jobs",
            json={
                "backend": "numpy",
                "hidden_layers": [1024, 512],
                "batch_size": 60000,
                "epochs": 3,
                "log_every": 1,
            },
        ).json()["id"]
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
