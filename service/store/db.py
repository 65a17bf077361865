"""Engine, sessions and migrations.

SQLite connections get WAL (readers never block the writer), a 30 s busy timeout,
foreign keys on and synchronous=NORMAL. pysqlite's own transaction handling is
switched off (``isolation_level = None``) and SQLAlchemy's ``begin`` event emits
the BEGIN instead, as the SQLAlchemy SQLite docs recommend: every transaction
(reads and DDL included) is then real, and a transaction that will write can ask
for ``BEGIN IMMEDIATE`` - take the write lock first, waiting up to the busy
timeout - by beginning with the execution option ``sqlite_begin="IMMEDIATE"``
(see :func:`begin_write`). Without it, a transaction that reads and then writes
can fail at once with "database is locked" when another writer got in between.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event, func, inspect, make_url, select, text
from sqlalchemy.engine import URL, Connection, ExceptionContext
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from service.store.models import Base

log = logging.getLogger("mlplab.store")
# A migration says in one line what it changed (_upgrade): alembic's own INFO lines, two a connection
# and a paragraph a revision, and two at every /readyz check, are noise.
logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_SECONDS = 10
WAL_LIMIT_BYTES = 64 * 2**20
SQLITE_BEGIN = "sqlite_begin"  # execution option: "DEFERRED" (default) | "IMMEDIATE" | "EXCLUSIVE"
_PG_MIGRATE_LOCK = 0x6D6C706C  # "mlpl": pg_advisory_xact_lock key serialising migrations
_PG_QUEUE_LOCK = 0x71756575  # "queu": pg_advisory_xact_lock key serialising admissions to the queue


PG_LOCK_NOT_AVAILABLE = "55P03"


class DatabaseFolderMissing(OSError):
    """An SQLite path whose folder's parent does not exist."""


def server_connect_args(url: URL) -> dict[str, Any]:
    """PostgreSQL's connection arguments for `url`: a server that does not answer fails one in seconds,
    not the minutes of the OS's timeout; a statement waits for a lock as long as SQLite's busy timeout,
    then fails (is_busy): with no limit, a table lock held 40 s (VACUUM FULL, an ALTER) hung every
    request, /readyz and a worker's stop. The options the URL (or else PGOPTIONS) gives are kept after
    ours, so a search_path stays and a lock_timeout of the user's own wins."""
    given = url.query.get("options", os.environ.get("PGOPTIONS", ""))
    theirs = " ".join(given) if isinstance(given, tuple) else given
    return {
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "options": f"-c lock_timeout={BUSY_TIMEOUT_MS} {theirs}".strip(),
    }


def is_in_memory(url: str | URL) -> bool:
    """Whether `url` names an in-memory SQLite database: one process's alone."""
    parsed = make_url(url)
    database = parsed.database or ""
    return parsed.get_backend_name() == "sqlite" and (
        database in ("", ":memory:") or database.startswith("file::memory:")
    )


def make_engine(url: str, max_connections: int | None = None) -> Engine:
    """An Engine for `url`; SQLite gets the pragmas and transaction handling above.

    max_connections: how many connections the caller may have open at once (the API: its db_slots + 2).
    The pool keeps that many open once opened, so a burst does not open and close a connection per
    request; on a server database it is also the cap, safe only with the API's db_slots as well
    (docs/reliability.md). None: the pool's default size, no cap (a worker holds 2).
    """
    sa_url = make_url(url)
    pool: dict[str, Any] = {"max_overflow": -1} if max_connections is None else {"pool_size": max_connections}
    if sa_url.get_backend_name() != "sqlite":
        if max_connections is not None:
            pool["max_overflow"] = 0
        return create_engine(sa_url, pool_pre_ping=True, connect_args=server_connect_args(sa_url), **pool)

    database = sa_url.database or ""
    in_memory = is_in_memory(sa_url)
    # a file's path, resolved once (a later chdir moves nothing); None for memory and SQLite's file: URIs
    path = None if in_memory or database.startswith("file:") else Path(database).expanduser().resolve()
    if path is not None:
        try:  # its folder (./var on a first run), not the folders above: a mistyped path is no new database
            path.parent.mkdir(exist_ok=True)
        except FileNotFoundError:
            raise DatabaseFolderMissing(
                f"{path.parent.parent} does not exist: MLPLAB_DATABASE_URL's folder {path.parent} is made for "
                "its file, not the folders above it (a mistyped path would be a new, empty database)"
            ) from None
    opened: list[tuple[int, int]] = []  # (device, inode) of the file this engine's first connection opened
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}}
    if in_memory:
        # One shared connection, or each would see its own empty database. So one session at a time:
        # in-memory is for quick single-threaded checks; tests and services use a file.
        kwargs["poolclass"] = StaticPool
    else:
        # No cap: a file connection is cheap, and a capped pool alone deadlocks the API (docs/reliability.md).
        kwargs |= pool | {"max_overflow": -1}
    engine = create_engine(sa_url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None  # pysqlite emits no BEGIN; _on_begin below does
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not in_memory:
                _set_wal(cursor)
                # a checkpoint truncates the WAL to this: after a 300 MB checkpoint's write it kept its size
                cursor.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()
        if path is not None and not opened and (identity := _identity(path)) is not None:
            opened.append(identity)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = str(conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")).upper()
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"{SQLITE_BEGIN} must be DEFERRED, IMMEDIATE or EXCLUSIVE, not {mode!r}")
        # On the driver's connection: through SQLAlchemy's execution machinery it costs more than a read.
        statement = f"BEGIN {mode}"
        if opened and _identity(path) != opened[0]:  # type: ignore[arg-type]  # opened: path is a file
            # Open connections would go on in the unlinked file, which no later process sees: every
            # write acknowledged there is lost. Refused until the process restarts on what the path holds.
            gone = sqlite3.OperationalError(
                f"the database file {path} was deleted or replaced since this process opened it: "
                "restart the process to open what the path holds now"
            )
            raise DBAPIError.instance(statement, None, gone, sqlite3.Error)
        try:
            conn.connection.dbapi_connection.execute(statement)  # type: ignore[union-attr]
        except sqlite3.Error as exc:  # "database is locked" past the busy timeout: as SQLAlchemy raises it
            if _opened_read_only(exc):  # every connection opened while the file was unwritable is too
                conn.invalidate()
                engine.dispose()
            raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        if _opened_read_only(context.original_exception):
            context.is_disconnect = True  # the pool replaces it, as a dropped server connection

    return engine


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`; None when there is none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _opened_read_only(exc: BaseException) -> bool:
    """SQLite's SQLITE_READONLY: a connection opened while its file could not be written stays read-only
    once the file can be again, so it must be replaced (or the API refused every write until restarted)."""
    return (
        isinstance(exc, sqlite3.Error)
        and (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_READONLY
    )


def make_read_engine(engine: Engine, connections: int, *, wait_for_locks: bool = True) -> Engine:
    """An engine for short reads of `engine`'s database, with its own pool of `connections`, kept open.
    Without `wait_for_locks`, an SQLite read that would wait for a lock fails at once (is_busy).

    On a server database each statement commits on its own (AUTOCOMMIT: a one-statement read needs no
    BEGIN and ROLLBACK round trips) and checkouts are not pinged first: the caller retries a read once
    when its connection turns out to be dropped. An in-memory SQLite database is only `engine` itself.
    """
    if engine.dialect.name == "sqlite":
        if isinstance(engine.pool, StaticPool):
            return engine
        reads = make_engine(engine.url.render_as_string(hide_password=False), max_connections=connections)
        if not wait_for_locks:
            event.listen(reads, "connect", lambda dbapi, _: dbapi.execute("PRAGMA busy_timeout = 0"))
        return reads
    return create_engine(
        engine.url,
        pool_size=connections,
        max_overflow=0,
        isolation_level="AUTOCOMMIT",
        connect_args=server_connect_args(engine.url),
    )


def is_busy(exc: DBAPIError) -> bool:
    """The statement failed because another connection holds a lock it needs (past the busy timeout, or
    PostgreSQL's lock_timeout)."""
    if getattr(exc.orig, "sqlstate", None) == PG_LOCK_NOT_AVAILABLE:
        return True
    return (getattr(exc.orig, "sqlite_errorcode", 0) & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def is_full(exc: DBAPIError) -> bool:
    """The write failed for want of disk: SQLite's SQLITE_FULL, PostgreSQL's disk_full (53100)."""
    code = getattr(exc.orig, "sqlite_errorcode", 0) & 0xFF
    return code == sqlite3.SQLITE_FULL or getattr(exc.orig, "sqlstate", None) == "53100"


def is_read_only(exc: DBAPIError) -> bool:
    """The server refused a write because it takes reads only: PostgreSQL's read_only_sql_transaction
    (25006), as a standby answers after a failover (SQLite's read-only file is an OperationalError)."""
    return getattr(exc.orig, "sqlstate", None) == "25006"


def transient(exc: BaseException) -> bool:
    """An error of the database's state, not of the request: unreachable, restarting, locked, or taking
    reads only for now. Waiting may mend it; the worker keeps what it could not write and tries again."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and is_read_only(exc)


def _set_wal(cursor: sqlite3.Cursor) -> None:
    # Switching a new file to WAL needs an exclusive lock, and SQLite does not always wait the
    # busy timeout for it: two processes opening a fresh file at once can see "locked". Retry.
    # WAL is persistent, so on an existing database this is a no-op that takes no lock.
    for delay in (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 0):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or not delay:
                raise
            time.sleep(delay)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (the API serialises them after the scope)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit when the block succeeds, roll back when it raises, always close."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


class LateWriteWarning(UserWarning):
    """A write began in an SQLite transaction that had already read without the write lock."""


def begin_write(session: Session) -> None:
    """Start the session's transaction as a write transaction (``BEGIN IMMEDIATE`` on SQLite).

    Call it before the first query of a unit of work that will write (an API handler that
    loads a job and then cancels it: begin_write, then load). Once the session has read in a
    plain (deferred) transaction, SQLite can't upgrade it: its first write fails at once with
    "database is locked" if any other connection committed since that read, whatever the busy
    timeout. This then warns (LateWriteWarning) and carries on. On PostgreSQL it does nothing
    (row locks do the work there).
    """
    if not session.in_transaction():
        session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
        return
    connection = session.connection()
    if (
        connection.dialect.name == "sqlite"
        and connection.get_execution_options().get(SQLITE_BEGIN) != "IMMEDIATE"
    ):
        warnings.warn(
            "SQLite: this write runs in a transaction that began with a read, without the write lock; "
            "it fails with 'database is locked' if another writer commits in between. "
            "Call service.store.db.begin_write(session) before the session's first query.",
            LateWriteWarning,
            stacklevel=3,
        )


def lock_queue(session: Session) -> None:
    """Begin a write transaction that holds the queue's admission until it ends, so that a count of the
    queued jobs and the inserts it admits are one step: SQLite's write lock already is one; PostgreSQL,
    whose begin_write takes nothing, takes an advisory lock (40 sweeps at once queued 2,112 jobs past a
    limit of 1,000)."""
    begin_write(session)
    if session.connection().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(_PG_QUEUE_LOCK)))


def begin_snapshot(session: Session) -> None:
    """Start the session's transaction so that all its reads see one snapshot of the database: on
    PostgreSQL REPEATABLE READ (READ COMMITTED gives each statement its own); an SQLite read transaction
    is one already. Call it before the session's first query."""
    if not session.in_transaction() and session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config built in code (no alembic.ini), optionally handing env.py a connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


# Alembic's `context` is a module global: one migration per process at a time.
_migrate_lock = threading.Lock()


class UnknownRevision(Exception):
    """The database's schema is at a revision this mlplab does not know: a newer one migrated it."""

    def __init__(self, connection: Connection) -> None:
        revision = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        super().__init__(
            f"the database's schema is at revision {revision!r}, which this mlplab does not know: a newer "
            "mlplab migrated it. Run that version (every API and worker), or restore the backup taken "
            "before the upgrade (docs/deployment.md, 'Upgrades')"
        )


class MigrationLockHeld(Exception):
    """Another connection held the database's write or migration lock for all of MIGRATE_WAIT_SECONDS."""

    def __init__(self, engine: Engine, waited: float) -> None:
        super().__init__(
            f"database {shown_url(engine.url.render_as_string(hide_password=False))} stayed locked by "
            f"another connection for {waited:.0f} s: a migration or a long write elsewhere holds it"
        )


class _Held(Exception):
    """One try found the lock taken."""


MIGRATE_POLL_MS = 500  # a migration waits for the lock this long at a time: a stop request is heard between
MIGRATE_WAIT_SECONDS = 5 * BUSY_TIMEOUT_MS / 1000
MIGRATE_WARN_SECONDS = BUSY_TIMEOUT_MS / 1000


def migrate(engine_or_url: Engine | str, stop: Callable[[], bool] = lambda: False) -> bool:
    """Bring the database to the newest revision (``alembic upgrade head``); a no-op when it is there.

    Safe when an API and a worker start at once on one database: the whole upgrade runs in one
    write transaction (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL), so the second
    caller waits, then finds the schema at head and does nothing. Threads in one process are
    serialised by a lock, because Alembic keeps its migration context in a module global.
    While another connection holds the lock it tries again every MIGRATE_POLL_MS, saying so every
    MIGRATE_WARN_SECONDS, and returns False, migrating nothing, once `stop()` is true (a worker told
    to stop); past MIGRATE_WAIT_SECONDS it raises MigrationLockHeld.
    """
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with _migrate_lock:
            started = time.monotonic()
            warnings_said = 0
            while True:
                try:
                    _upgrade(engine)
                    return True
                except _Held:
                    pass
                waited = time.monotonic() - started
                if stop():
                    log.info("stopped while waiting for the database's lock: nothing migrated")
                    return False
                if waited >= MIGRATE_WAIT_SECONDS:
                    raise MigrationLockHeld(engine, waited)
                if waited >= warnings_said * MIGRATE_WARN_SECONDS:
                    # without a word a start under a held lock looked hung for minutes
                    log.warning(
                        "database %s locked by another connection: waiting for it (%.0f s so far, "
                        "giving up at %.0f s)",
                        shown_url(engine.url.render_as_string(hide_password=False)),
                        waited,
                        MIGRATE_WAIT_SECONDS,
                    )
                    warnings_said += 1
                # SQLite's BEGIN IMMEDIATE waited MIGRATE_POLL_MS itself; PostgreSQL's try does not wait
                time.sleep(0.1 if engine.dialect.name == "sqlite" else MIGRATE_POLL_MS / 1000)
    finally:
        if engine is not engine_or_url:
            engine.dispose()


def _upgrade(engine: Engine) -> None:
    """One try: the upgrade in one write transaction, or _Held when another connection holds the lock."""
    try:
        with (
            engine.connect() as connection,
            _lock_waits_short(connection),
            _foreign_keys_deferred_to_the_end(connection),
        ):
            connection.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    taken = connection.exec_driver_sql(
                        f"SELECT pg_try_advisory_xact_lock({_PG_MIGRATE_LOCK})"
                    )
                    if not taken.scalar():
                        raise _Held
                    # a table locked by another session (a VACUUM FULL) is waited for as SQLite's lock is:
                    # MIGRATE_POLL_MS at a try, a stop heard between, not the 30 s lock_timeout in one call
                    connection.exec_driver_sql(f"SET LOCAL lock_timeout = {MIGRATE_POLL_MS}")
                was = _revisions(connection)
                try:
                    command.upgrade(alembic_config(connection), "head")
                except CommandError as exc:
                    if "Can't locate revision" not in str(exc):
                        raise
                    raise UnknownRevision(connection) from exc
                now = _revisions(connection)
                if connection.dialect.name == "sqlite":
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
                    if broken is not None:  # rolls the whole upgrade back
                        raise RuntimeError(
                            f"the migration broke a foreign key (table, rowid, parent): {broken}"
                        )
            if now != was:  # committed: said once it is so
                shown = shown_url(engine.url.render_as_string(hide_password=False))
                if was:
                    log.info("database %s migrated from %s to %s", shown, ", ".join(was), ", ".join(now))
                else:  # a first start, or a mistyped or deleted path: the operator tells which
                    log.warning(
                        "database %s migrated from empty to %s: a new database; if you meant one with your "
                        "jobs, check MLPLAB_DATABASE_URL",
                        shown,
                        ", ".join(now),
                    )
    except DBAPIError as exc:  # SQLite's busy timeout (short here), PostgreSQL's lock_timeout on a table
        if not is_busy(exc):
            raise
        raise _Held from exc


@contextmanager
def _lock_waits_short(connection: Connection) -> Iterator[None]:
    """SQLite: the migration's BEGIN IMMEDIATE waits MIGRATE_POLL_MS for the lock, not the busy timeout."""
    if connection.dialect.name != "sqlite":
        yield
        return
    driver = connection.connection.dbapi_connection
    assert driver is not None
    driver.execute(f"PRAGMA busy_timeout = {MIGRATE_POLL_MS}")
    try:
        yield
    finally:
        driver.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


@contextmanager
def _foreign_keys_deferred_to_the_end(connection: Connection) -> Iterator[None]:
    """SQLite: foreign keys unenforced while migrating and checked once at the end, as SQLite's ALTER TABLE
    steps prescribe: a batch migration drops and recreates a table that other tables' rows reference."""
    if connection.dialect.name != "sqlite":
        yield
        return
    driver = connection.connection.dbapi_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys = OFF")  # before BEGIN: inside a transaction it is a no-op
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys = ON")


@lru_cache(maxsize=1)
def _heads() -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def head_revisions() -> set[str]:
    """The revisions the code expects (normally one)."""
    return set(_heads())


def current_revisions(engine: Engine) -> set[str]:
    """The revisions the database is at; empty before the first migration."""
    with engine.connect() as connection:
        return set(_revisions(connection))


def _revisions(connection: Connection) -> list[str]:
    if not inspect(connection).has_table("alembic_version"):
        return []
    return sorted(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


def shown_url(url: str) -> str:
    """The database's URL for a log line, without its password; a relative SQLite path with the file it
    names here (an API and a worker started in two folders each had their own)."""
    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    path = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if path and path != ":memory:" and not Path(path).is_absolute():
        shown += f" (= {Path(path).resolve()})"
    return shown


def database_error(url: str, exc: Exception) -> str:
    """One line for people: which database (no password) and what its driver said first."""
    return (
        f"database error on {shown_url(url)}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    )


def is_migrated(engine: Engine) -> bool:
    """True when the database is at the code's head revision (for /readyz).

    A database that can't be reached raises (SQLAlchemy's OperationalError), so the caller
    can report why rather than a bare "not ready".
    """
    return current_revisions(engine) == head_revisions()


def unwritable(engine: Engine) -> str | None:
    """Why the database takes no writes though it reads (for /readyz), or None: on SQLite, a file or
    folder this process may not write (permissions, an immutable flag, a read-only mount); on a server,
    a read-only session (a standby). Cheap: it writes nothing."""
    if engine.dialect.name == "sqlite":
        path = engine.url.database
        if not path or is_in_memory(engine.url):
            return None
        file = Path(path).resolve()
        wal = file.with_name(file.name + "-wal")
        refused = [
            each for each in (file, wal, file.parent) if each.exists() and not os.access(each, os.W_OK)
        ]
        if not refused:
            return None
        why = f"{refused[0]} cannot be written (permissions, an immutable flag or a read-only mount)"
        if refused == [file] and wal.exists():
            # connections opened before still write, into the WAL, which no checkpoint can fold back
            return (
                f"{why}: writes through connections opened before go on into {wal.name} "
                f"({wal.stat().st_size / 2**20:.1f} MB now), which grows until the file is writable again; "
                "others are refused"
            )
        return why
    with engine.connect() as connection:
        if connection.execute(text("SHOW transaction_read_only")).scalar() == "on":
            return "the server takes reads only (transaction_read_only: a standby?)"
    return None


def read_each_table(engine: Engine) -> None:
    """Read one row of every table (for /readyz): cheap, and raises what a damaged or unreadable
    database raises on the data routes (a corrupt SQLite page, a missing table, a refused connection)."""
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            connection.execute(select(table).limit(1)).all()  # every column: the table, not a smaller index
