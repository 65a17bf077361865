"""The database's upkeep and how its errors are read (service/store/db.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy.exc import IntegrityError, InternalError, OperationalError

from service.store import db
from service.store.db import WAL_LIMIT_BYTES, make_engine, transient
from tests.conftest import fresh_database
from tests.support import wait_for


def test_the_wal_is_cut_back_after_a_checkpoint(tmp_path):
    """After a big job's 300 MB of checkpoint writes the WAL file kept its size for good (no size limit)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE blobs (data BLOB)")
        connection.exec_driver_sql("CREATE TABLE small (x INTEGER)")
        connection.exec_driver_sql("INSERT INTO blobs VALUES (zeroblob(100 * 1024 * 1024))")
    wal = tmp_path / "wal.db-wal"
    assert wal.stat().st_size > 100 * 2**20
    with engine.connect() as connection:  # outside a transaction, as SQLite's own checkpoints run
        connection.connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
    with engine.begin() as connection:  # the first write after a whole checkpoint starts the WAL over
        connection.exec_driver_sql("INSERT INTO small VALUES (1)")
    assert wal.stat().st_size <= WAL_LIMIT_BYTES
    engine.dispose()


def test_a_read_only_server_is_a_state_to_wait_out_not_a_bug():
    """PostgreSQL's read_only_sql_transaction (25006) is an InternalError: the worker failed its job for
    good on it, and the API answered 500; other InternalErrors are still bugs."""

    class Refused(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__("cannot execute UPDATE in a read-only transaction")
            self.sqlstate = sqlstate

    assert transient(InternalError("UPDATE jobs", {}, Refused("25006")))
    assert not transient(InternalError("UPDATE jobs", {}, Refused("XX000")))
    assert transient(OperationalError("SELECT 1", {}, Exception("server closed the connection")))
    assert not transient(IntegrityError("INSERT", {}, Exception("duplicate key")))


def test_a_migration_says_in_one_line_what_it_changed_and_nothing_when_it_changed_nothing(db_url, caplog):
    """A first start logged alembic's 25 lines, a paragraph a revision, before the API's own line."""
    with caplog.at_level(logging.INFO):
        assert db.migrate(db_url) is True
        assert db.migrate(db_url) is True  # at head already
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    (head,) = db.head_revisions()
    assert len(said) == 1 and said[0].endswith(
        f"migrated from empty to {head}: a new database; if you meant one with your jobs, check "
        "MLPLAB_DATABASE_URL"
    ), said


@contextmanager
def migration_lock_held(url: str) -> Iterator[None]:
    """The lock a migration takes, held by another connection: SQLite's write lock, PostgreSQL's advisory
    lock."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            connection.execution_options(**{db.SQLITE_BEGIN: "IMMEDIATE"})
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({db._PG_MIGRATE_LOCK})")
                yield
    finally:
        engine.dispose()


def test_a_migration_under_a_held_lock_says_so_and_stops_when_told(db_url, caplog):
    """Each try waited out the 30 s busy timeout in C (PostgreSQL: the advisory lock without end): a
    worker told to stop meanwhile went on waiting, for 159 s on SQLite."""
    stop = threading.Event()
    outcome: list[object] = []
    with caplog.at_level(logging.INFO, logger="mlplab.store"), migration_lock_held(db_url):
        waiting = threading.Thread(target=lambda: outcome.append(db.migrate(db_url, stop=stop.is_set)))
        waiting.start()
        wait_for(lambda: any("waiting for it" in r.getMessage() for r in caplog.records), what="the warning")
        stop.set()
        told = time.monotonic()
        waiting.join(timeout=5)
        assert time.monotonic() - told < 1.5
    engine = make_engine(db_url)
    assert outcome == [False] and not db.is_migrated(engine)
    engine.dispose()
    said = [r.getMessage() for r in caplog.records]
    assert "locked by another connection: waiting for it" in said[0] and "giving up at 150 s" in said[0]
    assert "nothing migrated" in said[-1]
    assert db.migrate(db_url) is True  # the lock released


def test_a_migration_waits_out_a_table_lock_on_postgresql_as_it_waits_for_the_migration_lock(
    tmp_path, caplog
):
    """A table the upgrade reads, locked (a VACUUM FULL), failed the start with 'canceling statement due to
    lock timeout' after 30 s instead of waiting, saying so, and hearing a stop within a second."""
    with fresh_database("postgresql", tmp_path) as url_text:
        assert db.migrate(url_text)
        holder = make_engine(url_text)
        stop = threading.Event()
        outcome: list[object] = []
        try:
            with caplog.at_level(logging.INFO, logger="mlplab.store"), holder.begin() as connection:
                connection.exec_driver_sql("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
                waiting = threading.Thread(
                    target=lambda: outcome.append(db.migrate(url_text, stop=stop.is_set))
                )
                waiting.start()
                wait_for(
                    lambda: any("waiting for it" in r.getMessage() for r in caplog.records), what="a warning"
                )
                stop.set()
                told = time.monotonic()
                waiting.join(timeout=5)
                assert time.monotonic() - told < 1.5  # not the 30 s lock_timeout of one try
        finally:
            holder.dispose()
        assert outcome == [False]
        assert db.migrate(url_text) is True  # the lock released


def test_a_migration_gives_up_on_a_lock_held_past_its_wait(db_url, monkeypatch):
    monkeypatch.setattr(db, "MIGRATE_WAIT_SECONDS", 1)
    with migration_lock_held(db_url), pytest.raises(db.MigrationLockHeld, match="stayed locked by another"):
        db.migrate(db_url)


def test_a_mistyped_sqlite_path_is_refused_not_made_a_new_database(tmp_path, caplog):
    """sqlite:////nonexistent/dir/x.db made both folders and an empty database, and a worker idled on it."""
    with pytest.raises(db.DatabaseFolderMissing, match=f"{tmp_path / 'no'} does not exist"):
        make_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'x.db'}")
    assert not (tmp_path / "no").exists()
    caplog.set_level(logging.INFO, logger="mlplab.store")
    engine = make_engine(f"sqlite:///{tmp_path / 'var' / 'x.db'}")  # its own folder is made: ./var at first
    db.migrate(engine)
    db.migrate(engine)
    engine.dispose()
    new = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(new) == 1 and new[0].startswith(
        f"database sqlite:///{tmp_path / 'var' / 'x.db'} migrated from empty"
    )


def test_an_sqlite_uri_database_is_opened_and_kept_without_a_file_check(tmp_path, monkeypatch):
    """sqlite:///file:x.db?uri=true (SQLAlchemy's documented form) was refused on every transaction as
    'deleted or replaced': the check stat()ed a path named 'file:x.db?...'."""
    monkeypatch.chdir(tmp_path)
    for url in ("sqlite:///file:u.db?uri=true", f"sqlite:///file:{tmp_path / 'v.db'}?uri=true"):
        engine = make_engine(url)
        assert db.migrate(engine) is True
        with engine.begin() as connection:
            connection.exec_driver_sql("SELECT count(*) FROM jobs")
        engine.dispose()
    assert (tmp_path / "u.db").exists() and (tmp_path / "v.db").exists()
