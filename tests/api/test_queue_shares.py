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
        assert [c.post("/jobs", json=job_body(seed=i)).status_code for i in range(3)] == [202, 202, 429]
        run_worker(settings, once=True)  # trains each trial, and queues the next as one ends
        trials = c.get(f"/studies/{study.json()['id']}").json()["trials"]
    assert len(trials) == 3
    engine = make_engine(db_url)
    with session_scope(make_sessionmaker(engine)) as session:
        clients = session.scalars(select(Job.client).where(Job.study_id == study.json()["id"])).all()
    engine.dispose()
    assert clients == ["10.0.0.7"] * 3


def test_a_long_forwarded_address_is_a_client_like_any_other(db_url):
    """Behind a trusted proxy the address is what it forwarded: 100 characters failed PostgreSQL's column."""
    settings = Settings(database_url=db_url, max_queued_per_client=1)
    with TestClient(create_app(settings), client=("x" * 100, 50000)) as c:
        assert c.post("/jobs", json=job_body()).status_code == 202
        assert_problem(c.post("/jobs", json=job_body(seed=1)), 429, "this client has 1 job queued")


def test_extending_a_study_counts_against_its_creators_share_whoever_extends_it(db_url):
    """Another address extended a study past its creator's share, while its own share was checked."""
    settings = Settings(
        database_url=db_url, data_dir=real_data_dir(), download=False, max_queued_per_client=2
    )
    with ExitStack() as stack:
        a, b = (
            stack.enter_context(TestClient(create_app(settings), client=(address, 50000)))
            for address in ("10.0.0.1", "10.0.0.2")
        )
        study = a.post("/studies", json=STUDY | {"trials": 1}).json()["id"]
        run_worker(settings, once=True)
        jobs = []
        for i in range(2):  # a fills its share; b fills its own
            jobs.append(a.post("/jobs", json=job_body(seed=i)).json()["id"])
            assert b.post("/jobs", json=job_body(seed=i)).status_code == 202
        # the trial would be a's: refused for a's share, though b asks
        extended = b.post(f"/studies/{study}/extend", json={"trials": 1})
        assert_problem(extended, 429, "this client has 2 jobs queued and asks for 1 more")
        assert a.post(f"/jobs/{jobs[0]}/cancel").status_code == 200  # room for the trial in a's share
        assert b.post(f"/studies/{study}/extend", json={"trials": 1}).status_code == 202  # b's share is full
        trials = a.get(f"/studies/{study}").json()["trials"]
        assert [t["status"] for t in trials] == ["succeeded", "queued"]
