"""The database's upkeep and how its errors are read (service/store/db.py)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError, InternalError, OperationalError

from service.store.db import WAL_LIMIT_BYTES, make_engine, transient


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


def test_a_start_that_waits_on_a_locked_database_says_so(tmp_path, monkeypatch, caplog):
    """Each try waits out the 30 s busy timeout: a worker started under a held lock printed nothing for
    159 s."""
    import logging

    from service.store import db

    tries = []

    def locked_twice(engine):
        tries.append(1)
        if len(tries) <= 2:
            raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))

    monkeypatch.setattr(db, "_upgrade", locked_twice)
    monkeypatch.setattr(db.time, "sleep", lambda seconds: None)
    with caplog.at_level(logging.WARNING, logger="mlplab.store"):
        db.migrate(f"sqlite:///{tmp_path / 'held.db'}")
    assert len(tries) == 3
    said = [r.getMessage() for r in caplog.records]
    assert (
        len(said) == 2 and "held.db locked by another connection for 30 s: trying again (1 of 4)" in said[0]
    )
