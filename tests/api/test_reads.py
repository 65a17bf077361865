"""GET /jobs/{id}, the most polled read, on its own path (Database.read): the same answers as the
rest of the API, and a connection the server dropped costs no request an error."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url

from service.main import create_app
from service.settings import Settings
from tests.conftest import POSTGRES_ONLY, assert_problem
from tests.factories import job_body
from tests.support import real_data_dir


def _client(db_url: str) -> TestClient:
    return TestClient(create_app(Settings(database_url=db_url, data_dir=real_data_dir(), download=False)))


def test_a_job_reads_as_it_was_submitted_and_listed(db_url):
    with _client(db_url) as client:
        submitted = client.post("/jobs", json=job_body()).json()
        read = client.get(f"/jobs/{submitted['id']}")
        assert read.status_code == 200 and read.headers["content-type"] == "application/json"
        assert read.json() == submitted == client.get("/jobs").json()["data"][0]
        assert_problem(client.get("/jobs/12345"), 404, "There is no job 12345.")
        assert_problem(client.get(f"/jobs/{2**40}"), 404)  # past any stored id: not found, not a 500
        assert_problem(client.get("/jobs/x"), 422)


@POSTGRES_ONLY
def test_a_read_survives_the_server_dropping_its_connections(db_url):
    with _client(db_url) as client:
        job_id = client.post("/jobs", json=job_body()).json()["id"]
        assert client.get(f"/jobs/{job_id}").status_code == 200  # the read pool now holds a connection
        name = make_url(db_url).database
        admin = create_engine(make_url(db_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:  # what a server restart does to every pooled connection
            dropped = connection.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %(name)s AND pid <> pg_backend_pid()",
                {"name": name},
            ).scalar()
        admin.dispose()
        assert dropped >= 1
        for _ in range(3):
            assert client.get(f"/jobs/{job_id}").json()["id"] == job_id
