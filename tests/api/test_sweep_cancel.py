"""POST /sweeps/{id}/cancel: a sweep's queued jobs cancelled at once, its running ones asked to stop, its
ended ones left as they are, other sweeps' jobs untouched; a problem when nothing is left to cancel."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings
from service.store.db import make_engine, make_sessionmaker, session_scope
from service.store.jobs import claim_job, finish_job, mark_cancelled
from tests.conftest import assert_problem
from tests.factories import job_body
from tests.store.test_jobs import result


@pytest.fixture
def roomy(settings: Settings):
    """The API with room for two sweeps in its queue."""
    with TestClient(create_app(settings.model_copy(update={"max_queued": 10}))) as client:
        yield client


def _sweep(client: TestClient, seeds: list[int]) -> dict:
    response = client.post("/sweeps", json={"base": job_body(), "grid": {"seed": seeds}})
    assert response.status_code == 202, response.text
    return response.json()


def _worker(settings: Settings, *steps: str) -> list[int]:
    """Play a worker: for each step, claim the oldest queued job and "finish" it or leave it "running";
    the ids it claimed."""
    engine = make_engine(settings.database_url)
    claimed = []
    with session_scope(make_sessionmaker(engine)) as s:
        for step in steps:
            job = claim_job(s, "w")
            assert job is not None
            claimed.append(job.id)
            if step == "finish":
                finish_job(s, job.id, "w", result(0.9, 0.91))
    engine.dispose()
    return claimed


def _statuses(client: TestClient, ids: list[int]) -> list[tuple[str, bool]]:
    jobs = [client.get(f"/jobs/{i}").json() for i in ids]
    return [(j["status"], j["cancel_requested"]) for j in jobs]


def test_cancel_stops_the_sweeps_unended_jobs_and_keeps_its_results(roomy, settings):
    sweep = _sweep(roomy, [1, 2, 3, 4])
    ids = sorted(j["id"] for j in sweep["jobs"])
    done, running = _worker(settings, "finish", "run")
    assert [done, running] == ids[:2]
    other = _sweep(roomy, [5, 6])

    response = roomy.post(f"/sweeps/{sweep['id']}/cancel")

    assert response.status_code == 200, response.text
    after = response.json()
    assert after["id"] == sweep["id"] and after["count"] == 4
    assert after["status"] == {
        "queued": 0,
        "running": 1,
        "succeeded": 1,
        "failed": 0,
        "cancelled": 2,
        "pruned": 0,
    }
    shown = {j["id"]: (j["status"], j["cancel_requested"]) for j in after["jobs"]}
    assert shown == {
        done: ("succeeded", False),
        running: ("running", True),  # its worker stops it at its next write
        ids[2]: ("cancelled", True),
        ids[3]: ("cancelled", True),
    }
    assert roomy.get(f"/sweeps/{sweep['id']}").json() == after  # what GET shows, and it was committed
    assert roomy.get(f"/jobs/{done}").json()["validation_accuracy"] == 0.91  # its result kept
    assert _statuses(roomy, sorted(j["id"] for j in other["jobs"])) == [("queued", False)] * 2
    assert roomy.get(f"/sweeps/{other['id']}").json()["status"]["queued"] == 2

    # Again while its job still runs: asked again, nothing else changes.
    again = roomy.post(f"/sweeps/{sweep['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == after["status"]

    # Once its worker has stopped it, every job has ended: nothing left to cancel.
    engine = make_engine(settings.database_url)
    with session_scope(make_sessionmaker(engine)) as s:
        mark_cancelled(s, running, "w")
    engine.dispose()
    problem = assert_problem(roomy.post(f"/sweeps/{sweep['id']}/cancel"), 409, sweep["id"])
    assert problem["title"] == "Sweep not running"
    assert roomy.get(f"/sweeps/{sweep['id']}").json()["status"]["cancelled"] == 3
    assert _statuses(roomy, sorted(j["id"] for j in other["jobs"])) == [("queued", False)] * 2


def test_a_second_cancel_of_a_queued_sweep_is_a_conflict(client):
    sweep = _sweep(client, [1, 2])
    first = client.post(f"/sweeps/{sweep['id']}/cancel")
    assert first.status_code == 200, first.text
    assert first.json()["status"]["cancelled"] == 2
    problem = assert_problem(client.post(f"/sweeps/{sweep['id']}/cancel"), 409, sweep["id"])
    assert problem["title"] == "Sweep not running"
    # Its slots in the queue are free again: a sweep of three fits the queue of three.
    assert client.post("/sweeps", json={"base": job_body(), "grid": {"seed": [1, 2, 3]}}).status_code == 202


def test_an_unknown_sweep_is_404_and_a_bad_id_422(client):
    sweep = _sweep(client, [1])
    unknown = "0123456789ab"
    assert unknown != sweep["id"]
    problem = assert_problem(client.post(f"/sweeps/{unknown}/cancel"), 404, unknown)
    assert problem["title"] == "Sweep not found"
    assert_problem(client.post("/sweeps/not-a-sweep/cancel"), 422)
    assert_problem(client.post(f"/sweeps/{'a' * 33}/cancel"), 422)
    assert client.get(f"/jobs/{sweep['jobs'][0]['id']}").json()["status"] == "queued"
