"""One client address holds at most MLPLAB_MAX_QUEUED_PER_CLIENT of the queue: its burst of jobs, sweeps or
studies gets a 429 of its own, while other clients still submit (MLPLAB_MAX_QUEUED filled by one address
had locked every other client out of submitting), on SQLite and PostgreSQL."""

from __future__ import annotations

from contextlib import ExitStack

from fastapi.testclient import TestClient
from sqlalchemy import select

from service.main import create_app
from service.settings import Settings
from service.store.db import make_engine, make_sessionmaker, session_scope
from service.store.jobs import claim_job
from service.store.models import Job
from service.turns import CLIENT_SHARE_FULL
from tests.conftest import assert_problem
from tests.factories import job_body
from tests.support import real_data_dir
from workers.worker import run_worker

STUDY = {
    "base": job_body(),
    "space": {"learning_rate": {"float": [0.001, 0.1]}},
    "trials": 3,
    "parallelism": 1,
}


def test_one_client_fills_its_share_of_the_queue_and_others_still_submit(db_url):
    settings = Settings(database_url=db_url, max_queued=10, max_queued_per_client=3)
    with ExitStack() as stack:
        a, b = (
            stack.enter_context(TestClient(create_app(settings), client=(address, 50000)))
            for address in ("10.0.0.1", "10.0.0.2")
        )
        assert [a.post("/jobs", json=job_body(seed=i)).status_code for i in range(3)] == [202] * 3
        for refused in (
            a.post("/jobs", json=job_body(seed=3)),
            a.post("/sweeps", json={"base": job_body(), "grid": {"seed": [4, 5]}}),
            a.post("/studies", json=STUDY),
        ):
            problem = assert_problem(refused, 429, "this client has 3 jobs queued and asks for ")
            assert (
                problem["title"] == CLIENT_SHARE_FULL
                and "(MLPLAB_MAX_QUEUED_PER_CLIENT)" in problem["detail"]
            )
            assert refused.headers["retry-after"] == "30"
        # another address still submits, while the queue (10) has room: a job, a sweep, a study
        assert b.post("/jobs", json=job_body(seed=9)).status_code == 202
        assert b.post("/sweeps", json={"base": job_body(), "grid": {"seed": [1, 2]}}).status_code == 202
        too_many = b.post("/sweeps", json={"base": job_body(), "grid": {"seed": [1, 2, 3, 4]}})
        assert_problem(too_many, 422, "4 jobs at once; one client may have at most 3 queued")
        assert a.get("/jobs").json()["count"] == 6  # nothing the refusals asked for was queued

        engine = make_engine(db_url)
        sessions = make_sessionmaker(engine)
        with session_scope(sessions) as session:  # one of a's jobs starts: a has room for one more
            job = claim_job(session, "w")
            assert job is not None and job.client == "10.0.0.1"
        engine.dispose()
        assert a.post("/jobs", json=job_body(seed=3)).status_code == 202
        assert_problem(a.post("/jobs", json=job_body(seed=4)), 429, "this client has 3 jobs queued")


def test_a_studys_trials_count_against_the_share_of_the_client_that_asked_for_it(db_url):
    """The worker queues a study's later trials: they are its client's, not nobody's."""
    settings = Settings(
        database_url=db_url, data_dir=real_data_dir(), download=False, max_queued_per_client=3
    )
    with TestClient(create_app(settings), client=("10.0.0.7", 50000)) as c:
        study = c.post("/studies", json=STUDY)
        assert study.status_code == 202, study.text
        run_worker(settings, once=True)  # trains each trial, and queues the next as one ends
        trials = c.get(f"/studies/{study.json()['id']}").json()["trials"]
    assert len(trials) == 3
    engine = make_engine(db_url)
    with session_scope(make_sessionmaker(engine)) as session:
        clients = session.scalars(select(Job.client).where(Job.study_id == study.json()["id"])).all()
    engine.dispose()
    assert clients == ["10.0.0.7"] * 3
