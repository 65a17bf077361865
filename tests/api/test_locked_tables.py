"""PostgreSQL: a table locked by another session (VACUUM FULL, an ALTER TABLE, a LOCK TABLE) makes a
request wait as long as SQLite's busy timeout, then answers 503 'Database busy' (a 40 s lock hung every
request, /readyz and a worker's stop for its whole length). Here the wait is shortened to 0.3 s."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from service.api import database
from service.main import create_app
from service.settings import Settings
from service.store import db
from tests.conftest import fresh_database
from tests.factories import job_body
from tests.support import real_data_dir


def test_a_locked_table_is_a_503_after_the_lock_timeout_not_a_hang(tmp_path, monkeypatch):
    short = db.SERVER_CONNECT_ARGS | {"options": "-c lock_timeout=300"}
    monkeypatch.setattr(db, "SERVER_CONNECT_ARGS", short)
    monkeypatch.setattr(database, "SERVER_CONNECT_ARGS", short)
    with fresh_database("postgresql", tmp_path) as url:
        settings = Settings(database_url=url, data_dir=real_data_dir(), download=False)
        with TestClient(create_app(settings)) as client:
            job = client.post("/jobs", json=job_body()).json()["id"]
            holder = create_engine(url)
            try:
                with holder.connect() as connection, connection.begin():
                    connection.exec_driver_sql("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
                    for method, path in (("GET", "/jobs"), ("GET", f"/jobs/{job}"), ("POST", "/jobs")):
                        started = time.monotonic()
                        answer = client.request(method, path, json=job_body() if method == "POST" else None)
                        assert answer.status_code == 503, (path, answer.text)
                        assert answer.json()["title"] == "Database busy" and "retry-after" in answer.headers
                        assert time.monotonic() - started < 5, path
                assert client.get(f"/jobs/{job}").status_code == 200  # the lock released
                assert client.get("/jobs").json()["count"] == 1  # the refused submission changed nothing
            finally:
                holder.dispose()
