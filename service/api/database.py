"""Database work for handlers that await: each call one thread hop.

A plain `def` handler with SessionDep costs four thread hops (the session's entry and exit, the
dependencies, the handler, the response's validation); `await database.run(fn, ...)` costs one.

`await database.read(fn, ...)` is the polled reads' path (GET /jobs/{id} first): no ORM session, a
few threads and connections of its own (so it takes no slot, and never queues behind a model's
loading or a burst of sessions), and on PostgreSQL no BEGIN, ROLLBACK or ping round trips. On an
SQLite file it reads on the event loop itself, where a one-row read costs less than a thread hop,
unless the read would wait for a lock (docs/performance.md, "GET /jobs/{id}"). A finished job's answer
never changes (every write to a job is guarded by its being queued or running), so `finished_jobs` keeps
it: reading it again costs no database round trip on any backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from service.api.lru import LRU
from service.store.db import is_busy, make_read_engine, session_scope

P = ParamSpec("P")
T = TypeVar("T")

# Fewer threads hand the GIL back and forth with the event loop less than Starlette's 40 do.
READ_THREADS = 4
FINISHED_JOBS_CACHED = 4096  # answers of 1-3 kB each


class Database:
    """The API's sessions and slots (main.py: db_slots), and its reads."""

    def __init__(self, engine: Engine, factory: sessionmaker[Session], slots: asyncio.Semaphore) -> None:
        self.factory = factory
        self.slots = slots
        self.read_engine = make_read_engine(engine, READ_THREADS)
        self.readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="mlplab-read")
        self.loop_engine: Engine | None = None
        self.finished_jobs: LRU[int, bytes] = LRU(FINISHED_JOBS_CACHED)  # GET /jobs/{id}'s body, by id
        if self.read_engine is not engine and engine.dialect.name == "sqlite":  # a file: WAL reads don't wait
            self.loop_engine = make_read_engine(engine, 1, wait_for_locks=False)
            self.loop_engine.connect().close()  # opened now (a new file's WAL switch may wait), then pooled

    def close(self) -> None:
        self.readers.shutdown(wait=True, cancel_futures=True)
        self.read_engine.dispose()
        if self.loop_engine is not None:
            self.loop_engine.dispose()

    async def run(self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """fn(session, *args, **kwargs) in one unit of work (session_scope), off the event loop."""
        async with self.slots:  # awaited holding no thread
            return await run_in_threadpool(self._scoped, fn, *args, **kwargs)

    async def read(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """fn(connection, *args, **kwargs), which only reads, off the event loop.

        On PostgreSQL each statement sees the latest commit (autocommit): fn should make one.
        """
        if self.loop_engine is not None:
            try:
                with self.loop_engine.connect() as connection:
                    return fn(connection, *args, **kwargs)
            except OperationalError as exc:
                if not is_busy(exc):
                    raise
        return await asyncio.wrap_future(self.readers.submit(partial(self._connected, fn, *args, **kwargs)))

    def _scoped(self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        with session_scope(self.factory) as session:
            return fn(session, *args, **kwargs)

    def _connected(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        try:
            with self.read_engine.connect() as connection:
                return fn(connection, *args, **kwargs)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        # The server dropped the connection (a restart): SQLAlchemy has emptied the pool; once more.
        with self.read_engine.connect() as connection:
            return fn(connection, *args, **kwargs)
