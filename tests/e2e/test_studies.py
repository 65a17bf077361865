"""A study run by real processes (the API, workers) on the real MNIST, cut to 500 training images:
`kill -9` of a worker holding a trial and of the API mid-study, and still exactly `trials` trials,
none duplicated, never more than `parallelism` in flight, and the study finishes with the best
trial by validation accuracy. On SQLite, then PostgreSQL."""

from __future__ import annotations

import signal
from datetime import datetime

import pytest

from tests.conftest import ON_EVERY_DATABASE
from tests.factories import job_body
from tests.support import start_service, wait_for

pytestmark = [pytest.mark.slow, ON_EVERY_DATABASE]

TRIALS, PARALLELISM = 6, 2
STUDY = {
    "base": job_body(epochs=3, log_every=1),
    "space": {
        "learning_rate": {"float": [0.01, 0.5], "log": True},
        "activation": {"choice": ["sigmoid", "tanh", "relu"]},
    },
    "sampler": "tpe",
    "trials": TRIALS,
    "parallelism": PARALLELISM,
    "pruner": "median",
    "seed": 0,
}


def most_in_flight(jobs: list[dict]) -> int:
    """The most trials queued or running at once, from the jobs' creation and end times."""
    spans = [
        (datetime.fromisoformat(j["created_at"]), datetime.fromisoformat(j["finished_at"])) for j in jobs
    ]
    return max(sum(start <= t < end for start, end in spans) for t, _ in spans)


def test_a_study_survives_kill_9_of_a_worker_and_of_the_api(tmp_path, module_db_url):
    service = start_service(
        tmp_path,
        module_db_url,
        MLPLAB_LEASE_SECONDS="2",
        MLPLAB_HEARTBEAT_SECONDS="0.3",
        MLPLAB_WORKER_THREADS="1",
    )
    try:
        with service.client() as client:
            response = client.post("/studies", json=STUDY)
            assert response.status_code == 202, response.text
            study_id = response.json()["id"]
            workers = {w.pid: w for w in (service.start_worker(), service.start_worker())}

            def a_running_trial():
                jobs = [
                    client.get(f"/jobs/{t['job_id']}").json()
                    for t in client.get(f"/studies/{study_id}").json()["trials"]
                ]
                return next((j for j in jobs if j["status"] == "running" and j["progress"]["step"]), None)

            def a_trial_held_by_a_stopped_worker():
                """A running trial whose worker is stopped (SIGSTOP) while it still holds it: a trial takes
                a fraction of a second, so it may end between the look and the signal."""
                held = a_running_trial()
                if held is None:
                    return None
                worker = workers[int(held["worker"].split(":")[1])]
                worker.send_signal(signal.SIGSTOP)
                now = client.get(f"/jobs/{held['id']}").json()
                if now["status"] == "running" and now["worker"] == held["worker"]:
                    return held, worker
                worker.send_signal(signal.SIGCONT)
                return None

            held, worker = wait_for(a_trial_held_by_a_stopped_worker, 120, "a trial to be training")
            worker.send_signal(signal.SIGKILL)
            service.api.send_signal(signal.SIGKILL)
            service.api.wait()
            service.start_api(timeout=90)  # a loaded machine: a cold start of the API's imports
            service.start_worker()

            def finished():
                study = client.get(f"/studies/{study_id}").json()
                return study if study["status"] == "finished" else None

            study = wait_for(finished, 300, "the study to finish", interval=0.5)
            jobs = [client.get(f"/jobs/{t['job_id']}").json() for t in study["trials"]]
    finally:
        service.stop()
    assert [t["number"] for t in study["trials"]] == list(range(TRIALS))
    assert len({t["job_id"] for t in study["trials"]}) == TRIALS
    assert all(t["status"] in ("succeeded", "pruned") for t in study["trials"]), study["counts"]
    assert (
        next(j for j in jobs if j["id"] == held["id"])["attempts"] == 2
    )  # the killed worker's trial, resumed
    assert most_in_flight(jobs) <= PARALLELISM
    succeeded = [t for t in study["trials"] if t["status"] == "succeeded"]
    assert study["best"] == max(succeeded, key=lambda t: (t["validation_accuracy"], -t["number"]))
    assert study["epochs_trained"] == sum(t["epochs"] for t in study["trials"])
