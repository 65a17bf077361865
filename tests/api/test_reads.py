"""GET /jobs/{id}, the most polled read, on its own path (Database.first): the same answers as the
rest of the API, and a connection the server dropped costs no request an error."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url
from sqlalchemy.exc import OperationalError

from service.api.database import FINISHED_JOBS_CACHED
from service.api.schemas import JobsPublic
from service.lru import LRU
from service.main import create_app
from service.settings import Settings
from service.store.db import is_busy
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
        assert_problem(client.get(f"/jobs/{2**40}"), 422, "2147483647")  # past any storable id: not a 500
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


def _read_only(db_url: str, on: bool) -> None:
    """Make the server take reads only for this database (as a standby after a failover), or not, and
    drop its connections so that every new one sees it."""
    name = make_url(db_url).database
    admin = create_engine(make_url(db_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        setting = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
        connection.exec_driver_sql(f'ALTER DATABASE "{name}" {setting}')
        connection.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %(name)s "
            "AND pid <> pg_backend_pid()",
            {"name": name},
        )
    admin.dispose()


@POSTGRES_ONLY
def test_a_server_taking_reads_only_is_a_503_to_retry_not_a_500(db_url):
    """A write to a standby was a 500 (ReadOnlySqlTransaction was taken for a bug), and a worker failed
    the job it trained for good, its error the SQL."""
    with _client(db_url) as client:
        job_id = client.post("/jobs", json=job_body()).json()["id"]
        _read_only(db_url, on=True)
        try:
            refused = client.post("/jobs", json=job_body())
            assert_problem(refused, 503, "refused this write")
            assert refused.headers["retry-after"] == "10"
            assert client.get(f"/jobs/{job_id}").status_code == 200  # reads go on
            assert client.get("/readyz").json()["writes"].startswith("the server takes reads only")
        finally:
            _read_only(db_url, on=False)
        assert client.post("/jobs", json=job_body()).status_code == 202


def _sqlite_error(tmp_path, locked: bool) -> sqlite3.OperationalError:
    """A real error of SQLite's: a read of a database another connection holds locked (a rollback
    journal's EXCLUSIVE lock: what a WAL reader meets while another process recovers the WAL), or of a
    table that does not exist."""
    path = tmp_path / f"locking-{locked}.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    if locked:
        holder.execute("BEGIN EXCLUSIVE")
    reader = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        reader.execute("SELECT * FROM t" if locked else "SELECT * FROM missing")
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        reader.close()
        holder.close()
    raise AssertionError("the read succeeded")


def test_is_busy_tells_a_lock_from_other_errors(tmp_path):
    assert is_busy(OperationalError("SELECT", {}, _sqlite_error(tmp_path, locked=True)))
    assert not is_busy(OperationalError("SELECT", {}, _sqlite_error(tmp_path, locked=False)))


def test_on_sqlite_a_read_that_would_wait_for_a_lock_is_read_off_the_event_loop(tmp_path, monkeypatch):
    busy = _sqlite_error(tmp_path, locked=True)
    with _client(f"sqlite:///{tmp_path / 'api.db'}") as client:
        submitted = client.post("/jobs", json=job_body()).json()
        database = client.app.state.database
        assert database.loop_engine is not None  # on an SQLite file, reads start on the event loop

        def locked():
            raise OperationalError("BEGIN", {}, busy)

        monkeypatch.setattr(database.loop_engine, "connect", locked)
        read = client.get(f"/jobs/{submitted['id']}")
        assert read.status_code == 200 and read.json() == submitted


def test_a_finished_job_is_answered_again_without_the_database_and_a_live_one_never(db_url, monkeypatch):
    with _client(db_url) as client:
        live, finished = (client.post("/jobs", json=job_body()).json() for _ in range(2))
        assert client.get(f"/jobs/{finished['id']}").json()["status"] == "queued"
        cancelled = client.post(f"/jobs/{finished['id']}/cancel").json()
        assert cancelled["status"] == "cancelled"  # queued, it was not kept: its change is seen
        assert client.get(f"/jobs/{finished['id']}").json() == cancelled

        def unreachable(*args, **kwargs):
            raise AssertionError("read the database")

        monkeypatch.setattr(client.app.state.database, "first", unreachable)
        assert client.get(f"/jobs/{finished['id']}").json() == cancelled
        with pytest.raises(AssertionError, match="read the database"):
            client.get(f"/jobs/{live['id']}")


@POSTGRES_ONLY
def test_postgresql_reads_on_the_loop_take_turns_and_survive_cancellation(db_url):
    """One connection, five reads: served in the order they came, and a read cancelled while it waits
    or while its statement runs costs the others nothing."""
    from sqlalchemy import func, literal, literal_column, select, table
    from sqlalchemy.exc import ProgrammingError

    from service.api.database import LoopReads
    from service.store.db import make_engine

    engine = make_engine(db_url)
    reads = LoopReads(engine, 1)
    slow = select(func.pg_sleep(0.2).label("slept"), literal(0).label("n"))
    numbered = select(literal(1).label("n"))

    async def scenario():
        served = []

        async def read(n):
            await (reads.first(slow, {}) if n == 0 else reads.first(numbered, {}))
            served.append(n)

        tasks = [asyncio.create_task(read(n)) for n in range(5)]
        await asyncio.sleep(0.05)  # read 0 runs its statement, 1 to 4 wait their turn
        tasks[2].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert served == [0, 1, 3, 4]
        running = asyncio.create_task(reads.first(slow, {}))
        await asyncio.sleep(0.05)
        running.cancel()  # mid-statement
        with pytest.raises(asyncio.CancelledError):
            await running
        row = await reads.first(numbered, {})
        assert row.n == 1
        missing = select(literal_column("x")).select_from(table("no_such_table"))
        with pytest.raises(ProgrammingError):  # SQLAlchemy's, as every other read raises
            await reads.first(missing, {})
        assert (await reads.first(numbered, {})).n == 1  # the connection is still good
        await reads.close()
        with pytest.raises(OperationalError, match="shutting down"):
            await reads.first(numbered, {})

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()


def test_a_page_of_jobs_reads_the_same_whether_its_finished_jobs_were_kept_or_not(db_url):
    with _client(db_url) as client:
        ids = [client.post("/jobs", json=job_body()).json()["id"] for _ in range(3)]
        client.post(f"/jobs/{ids[0]}/cancel")
        first, again = client.get("/jobs"), client.get("/jobs")  # the cancelled job's JSON kept, then reused
        assert first.status_code == 200 and first.headers["content-type"] == "application/json"
        assert again.text == first.text
        assert JobsPublic.model_validate_json(first.text).model_dump_json() == first.text  # the schema's JSON
        assert [j["status"] for j in first.json()["data"]] == ["queued", "queued", "cancelled"]
        client.app.state.database.finished_jobs = LRU(FINISHED_JOBS_CACHED)  # as a fresh process
        assert first.json()["data"][2] == client.get(f"/jobs/{ids[0]}").json()
        client.post(f"/jobs/{ids[2]}/cancel")  # a live job is read afresh every time
        assert [j["status"] for j in client.get("/jobs").json()["data"]] == [
            "cancelled",
            "queued",
            "cancelled",
        ]
