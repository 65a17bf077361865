"""Readiness tells the truth about the database, and a damaged one is a 503 on every data route."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, text

from service.main import create_app
from tests.conftest import assert_problem
from tests.support import metric_samples


def _overwrite(db: Path, what: str) -> None:
    """Overwrite the root page of table `what` (or, for "header", the file's first 100 bytes) with junk."""
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every row in the file itself
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        root = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (what,)).fetchone()
    connection.close()
    offset, length = (0, 100) if what == "header" else ((root[0] - 1) * page_size, page_size)
    with db.open("r+b") as f:
        f.seek(offset)
        f.write(b"\xa5" * length)


@pytest.mark.parametrize("replaced", [False, True], ids=["deleted", "replaced"])
def test_a_database_file_deleted_or_replaced_under_the_service_is_refused_not_written_unseen(
    settings, replaced
):
    """rm mlplab.db* under a running API: it went on answering 202 into the unlinked file, /readyz 'ready',
    while a worker started after made a new, empty file; the restarted API had 0 jobs."""
    db = Path(settings.database_url.removeprefix("sqlite:///"))
    with TestClient(create_app(settings)) as client:
        client.post("/jobs", json={"backend": "numpy"})
        for file in db.parent.glob(db.name + "*"):
            file.unlink()
        if replaced:
            sqlite3.connect(db).close()
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["database"].startswith("unreachable"), ready.text
        for method, path in [("POST", "/jobs"), ("GET", "/jobs"), ("GET", "/jobs/1")]:
            body = {"backend": "numpy"} if method == "POST" else None
            assert_problem(client.request(method, path, json=body), 503, "MLPLAB_DATABASE_URL")
    assert not replaced or sqlite3.connect(db).execute("SELECT count(*) FROM sqlite_master").fetchone() == (
        0,
    )


@pytest.mark.parametrize("what", ["jobs", "header"])
def test_a_damaged_database_is_not_ready_and_its_data_routes_answer_503(settings, what):
    db = Path(settings.database_url.removeprefix("sqlite:///"))
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        job = client.post("/jobs", json={"backend": "numpy"}).json()["id"]
        client.app.state.engine.dispose()  # no connection keeps the pages it cached
        _overwrite(db, what)
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "not ready", ready.text
        assert ready.json()["database"].split(":")[0] in ("unreadable", "unreachable"), ready.text
        routes = [
            ("GET", "/jobs"),
            ("GET", f"/jobs/{job}"),
            ("GET", f"/jobs/{job}/losses"),
            ("GET", f"/compare?ids={job},{job + 1}"),
            ("POST", f"/jobs/{job}/cancel"),
            ("POST", "/jobs"),
        ]
        if what == "header":  # not a database at all: every route (a damaged jobs table spares the others)
            routes += [("GET", "/models"), ("GET", "/sweeps"), ("GET", "/models/1/weights")]
        for method, path in routes:
            body = {"backend": "numpy"} if (method, path) == ("POST", "/jobs") else None
            problem = assert_problem(
                client.request(method, path, json=body), 503, "MLPLAB_DATABASE_URL", "/readyz"
            )
            assert problem["title"] == "Database unavailable", (method, path)
        assert client.get("/healthz").status_code == 200  # the process itself is fine
        scraped = client.get("/metrics")  # how an operator's alert learns it: still this replica's counts
        assert scraped.status_code == 200, scraped.text
        samples = metric_samples(scraped.text)
        assert samples[("mlplab_database_up", ())] == 0
        assert (
            samples[
                ("mlplab_http_requests_total", (("method", "GET"), ("route", "/readyz"), ("status", "503")))
            ]
            == 1
        )
        assert not any(name == "mlplab_jobs" for name, _ in samples)


def test_a_write_lock_held_elsewhere_is_a_busy_503_to_retry_not_an_unreadable_database(settings, monkeypatch):
    """A study's asks held the write lock for minutes: another client's POST /jobs said 'cannot be read'."""
    from service.store import db as store_db

    monkeypatch.setattr(store_db, "BUSY_TIMEOUT_MS", 200)  # the API waits 0.2 s for the lock, not 30 s
    with TestClient(create_app(settings)) as client:
        holder = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # an sqlite3 shell, a VACUUM, a long writer
            refused = client.post("/jobs", json={"backend": "numpy"})
        finally:
            holder.close()
        problem = assert_problem(refused, 503, "busy timeout", "retry")
        assert problem["title"] == "Database busy" and refused.headers["retry-after"] == "5"
        assert client.get("/jobs").json()["count"] == 0
        assert client.post("/jobs", json={"backend": "numpy"}).status_code == 202  # lock gone: served


def test_a_full_database_disk_is_a_503_that_says_so_and_reads_go_on(settings):
    """A full disk answered 'The database cannot be read ... /readyz its state', while reads worked and
    /readyz said ready."""
    path = settings.database_url.removeprefix("sqlite:///")
    pages = sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0]

    def no_room(connection, _record) -> None:  # the disk full at the database's present size
        connection.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(Engine, "connect", no_room)
    try:
        with TestClient(create_app(settings.model_copy(update={"max_queued": 100}))) as client:
            sweep = {"base": {"backend": "numpy"}, "grid": {"seed": list(range(60))}}
            refused = client.post("/sweeps", json=sweep)
            problem = assert_problem(refused, 503, "disk is full", "reads still work")
            assert problem["title"] == "Database full" and refused.headers["retry-after"] == "60"
            assert client.get("/jobs").json()["count"] == 0  # nothing half-written, and read
    finally:
        event.remove(Engine, "connect", no_room)


def test_readiness_says_how_much_room_the_sqlite_file_has_and_when_it_runs_short(settings, monkeypatch):
    """/readyz said ready, and nothing more, while the disk under the SQLite file was full."""
    from service.api.routes import health

    with TestClient(create_app(settings)) as client:
        roomy = client.get("/readyz").json()
        assert roomy["status"] == "ready" and roomy["disk"].endswith("MB free where the SQLite database is")
        full = shutil.disk_usage("/")._replace(free=5 * 2**20)
        monkeypatch.setattr(health.shutil, "disk_usage", lambda path: full)
        short = client.get("/readyz")
        assert short.status_code == 200  # reads go on: informative, as the workers' line
        assert (
            short.json()["disk"] == "only 5 MB free where the SQLite database is: writes fail once it is full"
        )
        assert short.json()["writes"] == "possible"


def test_readiness_says_writes_fail_on_a_full_disk(settings, monkeypatch):
    """`writes` said 'possible' while the disk under the SQLite file was full and every write a 503."""
    from service.api.routes import health

    with TestClient(create_app(settings)) as client:
        full = shutil.disk_usage("/")._replace(free=64 * 2**10)
        monkeypatch.setattr(health.shutil, "disk_usage", lambda path: full)
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text  # reads go on
        assert ready.json()["writes"] == (
            "the disk under the SQLite database is full (64 kB free): writes fail until space is freed"
        )
        assert ready.json()["disk"] == "only 0 MB free where the SQLite database is: full (see writes)"


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` unwritable by this process: an immutable flag as root (which permissions do not stop),
    else read-only permissions."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(mode)


def test_an_unwritable_database_file_says_so_in_its_503_and_in_readiness(settings):
    """The file made immutable under a running API: a PUT's 503 said the database 'cannot be read' while
    reads were served, without Retry-After, and /readyz said all was well."""
    db = Path(settings.database_url.removeprefix("sqlite:///"))
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json()["writes"] == "possible"
        job = client.post("/jobs", json={"backend": "numpy"}).json()["id"]
        client.app.state.engine.dispose()
        with sqlite3.connect(db) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.close()
        with read_only(db), read_only(db.with_name(db.name + "-wal")):
            refused = client.post("/jobs", json={"backend": "numpy"})
            problem = assert_problem(refused, 503, "refused this write", "/readyz")
            assert "cannot be read" not in problem["detail"] and refused.headers["retry-after"] == "10"
            assert client.get(f"/jobs/{job}").status_code == 200  # reads go on
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
            assert ready.json()["writes"].startswith(f"{db.resolve()} cannot be written"), ready.text
            engine = client.app.state.engine
            with engine.connect() as a, engine.connect() as b, engine.connect() as c:  # a busy API's pool
                for connection in (a, b, c):
                    connection.execute(text("SELECT count(*) FROM jobs"))
        assert client.get("/readyz").json()["writes"] == "possible"
        # connections opened while it was unwritable are read-only for life: the first write to meet one
        # replaces them all (a 503 to retry); the API refused every write until restarted
        first = client.post("/jobs", json={"backend": "numpy"}).status_code
        assert first in (202, 503)
        assert [client.post("/jobs", json={"backend": "numpy"}).status_code for _ in range(2)] == [202] * 2


def test_a_database_file_made_unwritable_under_open_connections_says_its_wal_grows(settings):
    """`chattr +i` on the main file alone, the API running: its open connections went on writing into the
    WAL, which no checkpoint could fold back (25 MB), while /readyz said the file could not be written."""
    db = Path(settings.database_url.removeprefix("sqlite:///"))
    with TestClient(create_app(settings)) as client:
        assert client.post("/jobs", json={"backend": "numpy"}).status_code == 202  # a connection open
        with read_only(db):
            writes = client.get("/readyz").json()["writes"]
            assert writes.startswith(f"{db.resolve()} cannot be written"), writes
            assert f"go on into {db.name}-wal (" in writes and "MB now), which grows until" in writes
        assert client.get("/readyz").json()["writes"] == "possible"
