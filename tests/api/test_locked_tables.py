"""PostgreSQL: a table locked by another session (VACUUM FULL, an ALTER TABLE, a LOCK TABLE) makes a
request wait as long as SQLite's busy timeout, then answers 503 'Database busy' (a 40 s lock hung every
request, /readyz and a worker's stop for its whole length). Here the wait is shortened to 0.3 s, by the
URL's own options, which the busy timeout must not replace."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url

from service.main import create_app
from service.settings import Settings
from service.store.db import make_engine, make_read_engine
from tests.conftest import fresh_database
from tests.factories import job_body
from tests.support import real_data_dir


def with_options(url: str, options: str) -> str:
    return make_url(url).update_query_dict({"options": options}).render_as_string(hide_password=False)


def shown(engine, setting: str) -> str:
    with engine.connect() as connection:
        return connection.exec_driver_sql(f"SHOW {setting}").scalar_one()


def test_a_locked_table_is_a_503_after_the_lock_timeout_not_a_hang(tmp_path):
    with fresh_database("postgresql", tmp_path) as plain:
        url = with_options(plain, "-c lock_timeout=300")
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


def test_the_urls_and_pgoptions_settings_are_kept_beside_the_busy_timeout(tmp_path, monkeypatch):
    """The busy timeout once replaced a URL's ?options= (and PGOPTIONS): a search_path given there was lost."""
    with fresh_database("postgresql", tmp_path) as url:
        for engine in (make_engine(url), make_read_engine(make_engine(url), 1)):
            assert shown(engine, "lock_timeout") == "30s"
        engine = make_engine(with_options(url, "-c statement_timeout=1234 -c search_path=elsewhere"))
        assert (shown(engine, "statement_timeout"), shown(engine, "search_path")) == ("1234ms", "elsewhere")
        assert shown(engine, "lock_timeout") == "30s"
        monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=4321")
        assert shown(make_engine(url), "statement_timeout") == "4321ms"
        assert shown(make_read_engine(make_engine(url), 1), "statement_timeout") == "4321ms"
