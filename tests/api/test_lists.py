"""Lists that stay bounded with many runs: /jobs sorted on the server before paging, /models and /sweeps
paged, on a database of finished jobs written through the store's own verbs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings
from service.store.db import make_engine, make_sessionmaker, session_scope
from service.store.jobs import claim_job, enqueue_job
from tests.conftest import ON_EVERY_DATABASE, assert_problem
from tests.factories import History, finished_jobs, tiny_spec
from tests.support import real_data_dir

SORTS = [
    "id", "-id", "created_at", "-created_at", "test_accuracy", "-test_accuracy",
    "duration", "-duration", "status", "-status",
]  # fmt: skip


pytestmark = ON_EVERY_DATABASE  # NULLs sort differently in SQLite and PostgreSQL: the API must not


@pytest.fixture(scope="module")
def runs(module_db_url):
    """60 finished jobs (a sweep of 20, two sweeps of 8), then one running and two queued jobs."""
    url = module_db_url
    settings = Settings(database_url=url, data_dir=real_data_dir(), download=False)
    with TestClient(create_app(settings)) as client:
        engine = make_engine(url)
        factory = make_sessionmaker(engine)
        history = finished_jobs(factory, 60, sweep=20)
        with session_scope(factory) as s:
            for seed in range(3):
                enqueue_job(s, tiny_spec(seed=seed), now=datetime(2026, 3, 1, tzinfo=UTC))
        with session_scope(factory) as s:
            claim_job(s, "w1", now=datetime(2026, 3, 1, 0, 1, tzinfo=UTC))
        engine.dispose()
        yield client, history


def _seconds(job: dict, now: datetime) -> float | None:
    if job["started_at"] is None:
        return None
    end = datetime.fromisoformat(job["finished_at"]) if job["finished_at"] else now
    return (end - datetime.fromisoformat(job["started_at"])).total_seconds()


def _expected(jobs: list[dict], sort: str) -> list[int]:
    """The order the sort names, computed here from the jobs: values ascending or descending, jobs
    without one last, ties by id in the same direction."""
    key, descending = sort.removeprefix("-"), sort.startswith("-")
    now = datetime.now(UTC)
    value = {
        "id": lambda j: j["id"],
        "created_at": lambda j: j["created_at"],
        "test_accuracy": lambda j: j["test_accuracy"],
        "duration": lambda j: _seconds(j, now),
        "status": lambda j: j["status"],
    }[key]
    having = [j for j in jobs if value(j) is not None]
    having.sort(key=lambda j: (value(j), j["id"]), reverse=descending)
    without = sorted((j for j in jobs if value(j) is None), key=lambda j: j["id"], reverse=descending)
    return [j["id"] for j in having + without]


@pytest.mark.parametrize("sort", SORTS)
def test_jobs_are_sorted_as_a_whole_then_paged(runs, sort):
    client, _ = runs
    every = client.get("/jobs", params={"limit": 500}).json()["data"]
    assert len(every) == 63
    pages = [
        client.get("/jobs", params={"sort": sort, "limit": 10, "offset": offset}).json()
        for offset in range(0, 70, 10)
    ]
    assert {page["count"] for page in pages} == {63}
    assert [job["id"] for page in pages for job in page["data"]] == _expected(every, sort)


def test_jobs_sort_with_filters_and_a_bad_sort(runs):
    client, history = runs
    sweep_id, members = next(iter(history.sweeps.items()))
    page = client.get("/jobs", params={"sweep_id": sweep_id, "sort": "-test_accuracy", "limit": 500}).json()
    assert sorted(j["id"] for j in page["data"]) == sorted(members) and page["count"] == len(members)
    assert [j["id"] for j in page["data"]] == _expected(page["data"], "-test_accuracy")
    succeeded = client.get("/jobs", params={"status": "succeeded", "sort": "duration", "limit": 5}).json()
    assert succeeded["count"] == len(history.models) and len(succeeded["data"]) == 5
    problem = assert_problem(client.get("/jobs", params={"sort": "accuracy"}), 422)
    assert problem["invalid_params"][0]["name"] == "query.sort"


def test_models_are_paged_with_the_count_of_all(runs):
    client, history = runs
    first = client.get("/models", params={"sort": "test_accuracy"}).json()
    assert first["count"] == len(history.models) == 51 and len(first["data"]) == 51  # under the default 100
    pages = [client.get("/models", params={"limit": 20, "offset": o}).json() for o in (0, 20, 40)]
    assert [m["id"] for p in pages for m in p["data"]] == [m["id"] for m in first["data"]]
    assert {p["count"] for p in pages} == {51}
    accuracies = [m["test_accuracy"] for m in first["data"]]
    assert accuracies == sorted(accuracies, reverse=True)
    assert_problem(client.get("/models", params={"limit": 501}), 422)


def test_the_sweeps_list_carries_each_sweeps_best_jobs_only(runs):
    client, history = runs
    listed = client.get("/sweeps").json()
    assert listed["count"] == len(history.sweeps) == 3
    by_id = {s["id"]: s for s in listed["data"]}
    for sweep_id, members in history.sweeps.items():
        whole = client.get(f"/sweeps/{sweep_id}").json()
        assert whole["count"] == by_id[sweep_id]["count"] == len(members) == len(whole["jobs"])
        assert by_id[sweep_id]["jobs"] == whole["jobs"][:10]  # the best 10, as the sweep orders them
        assert by_id[sweep_id]["status"] == whole["status"] and by_id[sweep_id]["grid"] == whole["grid"]
    three = client.get("/sweeps", params={"jobs_limit": 3}).json()
    assert [len(s["jobs"]) for s in three["data"]] == [3, 3, 3]
    assert [len(s["jobs"]) for s in client.get("/sweeps", params={"jobs_limit": 0}).json()["data"]] == [0] * 3


def test_history_is_what_the_api_reports(runs):
    client, history = runs
    assert isinstance(history, History)
    statuses = client.get("/jobs", params={"limit": 500}).json()["data"]
    counts = {s: sum(j["status"] == s for j in statuses) for s in ("succeeded", "failed", "cancelled")}
    assert counts == {"succeeded": 51, "failed": 6, "cancelled": 3}
    job = client.get(f"/jobs/{history.models[0]}").json()
    epochs = client.get(f"/jobs/{job['id']}/epochs").json()
    losses = client.get(f"/jobs/{job['id']}/losses").json()
    assert len(epochs) == job["spec"]["epochs"] and len(losses) == job["progress"]["steps"] // 100
