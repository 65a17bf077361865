"""Database work for handlers that await: each call one thread hop, or none.

A plain `def` handler with SessionDep costs four thread hops (the session's entry and exit, the
dependencies, the handler, the response's validation); `await database.run(fn, ...)` costs one.
`await database.read_page(fn, ...)` is the same for a page of a listing, on threads of its own.

`await database.first(query, params)` is the polled reads' path (GET /jobs/{id}): one statement, no
ORM session, and never queued behind a model's loading or a burst of sessions. It runs on the event
loop itself where that costs less than a thread hop: on an SQLite file a one-row read (unless it would
wait for a lock: then a read thread), on PostgreSQL psycopg's async connections (LoopReads); elsewhere
a few read threads with connections of their own (docs/performance.md, "Serving"). A finished
job's answer never changes (every write to a job is guarded by its being queued or running), so
`finished_jobs` keeps it: reading it again costs no database round trip on any backend.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque, namedtuple
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Engine, Select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from service.lru import LRU
from service.store.db import is_busy, make_read_engine, server_connect_args, session_scope

P = ParamSpec("P")
T = TypeVar("T")

# Reads at once: read threads (fewer hand the GIL back and forth with the event loop less than
# Starlette's 40 do), or LoopReads' connections to PostgreSQL.
READERS = 4
FINISHED_JOBS_CACHED = 4096  # answers of 1-3 kB each


class Database:
    """The API's sessions and slots (main.py: db_slots), and its reads."""

    def __init__(self, engine: Engine, factory: sessionmaker[Session], slots: asyncio.Semaphore) -> None:
        self.factory = factory
        self.slots = slots
        self.finished_jobs: LRU[int, bytes] = LRU(FINISHED_JOBS_CACHED)  # GET /jobs/{id}'s body, by id
        # Listings at once: one on SQLite, where a read never waits for a server; two on a server
        # database, so that one's round trips overlap the other's work.
        listers = 1 if engine.dialect.name == "sqlite" else 2
        self.listers = ThreadPoolExecutor(listers, thread_name_prefix="mlplab-list")
        self.listing = asyncio.Semaphore(listers)
        self.loop_reads = LoopReads(engine, READERS) if engine.dialect.driver == "psycopg" else None
        self.read_engine = make_read_engine(engine, READERS)
        self.readers = ThreadPoolExecutor(READERS, thread_name_prefix="mlplab-read")
        self.loop_engine: Engine | None = None
        if self.read_engine is not engine and engine.dialect.name == "sqlite":  # a file: WAL reads don't wait
            self.loop_engine = make_read_engine(engine, 1, wait_for_locks=False)
            self.loop_engine.connect().close()  # opened now (a new file's WAL switch may wait), then pooled

    async def close(self) -> None:
        if self.loop_reads is not None:
            await self.loop_reads.close()
        self.readers.shutdown(wait=True, cancel_futures=True)
        self.listers.shutdown(wait=True, cancel_futures=True)
        self.read_engine.dispose()
        if self.loop_engine is not None:
            self.loop_engine.dispose()

    async def run(self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """fn(session, *args, **kwargs) in one unit of work (session_scope), off the event loop."""
        async with self.slots:  # awaited holding no thread
            return await run_in_threadpool(self._scoped, fn, *args, **kwargs)

    async def read_page(
        self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """fn(session, *args, **kwargs) as run() calls it, for a read of many rows (a page of a listing),
        on the few threads kept for them: many threads that each take the GIL back at every row SQLite
        returns serve pages slower together than one after another (docs/performance.md, "GET /jobs
        and the other listings")."""
        async with self.listing, self.slots:  # its turn first: one waiting for it holds no slot
            done = asyncio.wrap_future(self.listers.submit(partial(self._scoped, fn, *args, **kwargs)))
            try:
                return await asyncio.shield(done)
            except asyncio.CancelledError:
                await asyncio.wait({done})  # its thread holds a session, and so the slot, until it ends
                raise

    async def first(self, query: Select[Any], params: Mapping[str, Any]) -> Any:
        """The first row of one statement that only reads (its columns as attributes), or None.

        On PostgreSQL the statement sees the latest commit (autocommit).
        """
        if self.loop_reads is not None:
            return await self.loop_reads.first(query, params)
        if self.loop_engine is not None:
            try:
                with self.loop_engine.connect() as connection:
                    return connection.execute(query, params).first()
            except OperationalError as exc:
                if not is_busy(exc):
                    raise
        return await asyncio.wrap_future(self.readers.submit(self._first, query, params))

    def _scoped(self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        with session_scope(self.factory) as session:
            return fn(session, *args, **kwargs)

    def _first(self, query: Select[Any], params: Mapping[str, Any]) -> Any:
        try:
            with self.read_engine.connect() as connection:
                return connection.execute(query, params).first()
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        # The server dropped the connection (a restart): SQLAlchemy has emptied the pool; once more.
        with self.read_engine.connect() as connection:
            return connection.execute(query, params).first()


@dataclass
class _Statement:
    """A query compiled once for psycopg: its SQL, its bound values, its row type, and its columns'
    result processors for the types the server returns (known from the first result)."""

    sql: str
    params: dict[str, Any]  # its bound values (literals), to which a read's parameters are added
    columns: list[Any]
    row: Callable[..., Any]
    processors: list[Callable[[Any], Any] | None] | None = None


class LoopReads:
    """One-statement reads of a PostgreSQL database on the event loop: psycopg's async connections
    (autocommit), opened when first needed, each handed to the waiting reads in the order they came.

    In arrival order because an asyncio.Queue, like SQLAlchemy's async pool, lets a newcomer take a
    connection ahead of the reads woken to wait for it: that made the tail (docs/performance.md). Rows
    come through the result processors SQLAlchemy would use (aware UTC datetimes); psycopg's errors
    become SQLAlchemy's, so a database that cannot be read is the API's 503 here too.
    """

    def __init__(self, engine: Engine, connections: int) -> None:
        self.dialect = engine.dialect
        self.url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.connect_args = server_connect_args(engine.url)
        self._free: list[psycopg.AsyncConnection[tuple[Any, ...]] | None] = [None] * connections
        self._waiting: deque[asyncio.Future[psycopg.AsyncConnection[tuple[Any, ...]] | None]] = deque()
        self._statements: dict[int, tuple[Select[Any], _Statement]] = {}
        self._closed = False

    async def first(self, query: Select[Any], params: Mapping[str, Any]) -> Any:
        statement = self._compiled(query)
        values: tuple[Any, ...] | None = None
        connection = await self._acquire()
        try:
            for attempt in (1, 2):
                try:
                    if connection is None or connection.closed:
                        connection = await psycopg.AsyncConnection.connect(
                            self.url, autocommit=True, **self.connect_args
                        )
                    cursor = await connection.execute(
                        statement.sql, {**statement.params, **params}, prepare=True
                    )
                    values = await cursor.fetchone()
                    if statement.processors is None:
                        statement.processors = self._processors(statement, cursor.description or [])
                    break
                except psycopg.Error as exc:
                    # Once more only on a new connection for one the server dropped (a restart).
                    dropped = isinstance(exc, psycopg.OperationalError) and (
                        connection is None or connection.closed
                    )
                    if attempt == 2 or not dropped:
                        raise DBAPIError.instance(statement.sql, dict(params), exc, psycopg.Error) from exc
        except asyncio.CancelledError:
            if connection is not None and connection.info.transaction_status != TransactionStatus.IDLE:
                connection.pgconn.finish()  # cancelled mid-statement and not recovered: closed
            raise
        finally:
            self._release(connection)
        if values is None or statement.processors is None:
            return None
        return statement.row(
            *(v if p is None else p(v) for p, v in zip(statement.processors, values, strict=True))
        )

    async def close(self) -> None:
        """Close the idle connections now, the rest as their reads end; later reads fail (503)."""
        self._closed = True
        free, self._free = self._free, []
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_exception(OperationalError("connect", {}, Exception("the API is shutting down")))
        for connection in free:
            if connection is not None:
                with contextlib.suppress(psycopg.Error):
                    await connection.close()

    def _compiled(self, query: Select[Any]) -> _Statement:
        known = self._statements.get(id(query))
        if known is None or known[0] is not query:
            columns = list(query.selected_columns)
            compiled = query.compile(dialect=self.dialect)
            row = namedtuple("Row", [str(column.key) for column in columns], rename=True)  # type: ignore[misc]
            statement = _Statement(compiled.string, compiled.params, columns, row)
            known = self._statements[id(query)] = (query, statement)
        return known[1]

    def _processors(
        self, statement: _Statement, description: Sequence[Any]
    ) -> list[Callable[[Any], Any] | None]:
        # As SQLAlchemy's cursor result builds them: each column type's dialect form, for the type the
        # server returned.
        return [
            column.type.dialect_impl(self.dialect).result_processor(self.dialect, described.type_code)
            for column, described in zip(statement.columns, description, strict=True)
        ]

    async def _acquire(self) -> psycopg.AsyncConnection[tuple[Any, ...]] | None:
        if self._closed:
            raise OperationalError("connect", {}, Exception("the API is shutting down"))
        if self._free and not self._waiting:
            return self._free.pop()
        turn: asyncio.Future[psycopg.AsyncConnection[tuple[Any, ...]] | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.append(turn)
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # handed a connection, then cancelled: pass it on
                self._release(turn.result())
            raise

    def _release(self, connection: psycopg.AsyncConnection[tuple[Any, ...]] | None) -> None:
        if self._closed:
            if connection is not None:
                connection.pgconn.finish()
            return
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():  # its read was not cancelled meanwhile
                turn.set_result(connection)
                return
        self._free.append(connection)
