"""Queues for costly work that every client shares (figures drawn, studies' first trials planned, large
uploads read and decoded): so many at once, at most `limit` waiting for a turn, and one more refused at
once, before its work, with a 503 and Retry-After (main.py), so that one client's burst (or a foreign
page's) cannot hold the API's threads or memory, nor queue every other user's request behind its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import TracebackType

CLIENT_SHARE_FULL = "Too many requests from this client"  # the title of a client's refusal past its share


class QueueFull(Exception):
    """The work's queue (or a client's share of it: 429) already holds its most: 503 with Retry-After."""

    def __init__(self, title: str, detail: str, retry_after: int, status: int = 503) -> None:
        super().__init__(detail)
        self.title, self.retry_after, self.status = title, retry_after, status


class Turns:
    """A lock (threads) that at most `limit` queue for, in its work's first part (`reserving`) or waiting;
    one more raises QueueFull(title, detail, retry_after)."""

    def __init__(self, limit: int, title: str, detail: str, retry_after: int) -> None:
        self.limit, self.title, self.detail, self.retry_after = limit, title, detail, retry_after
        self.reserved = 0  # admitted, doing what comes before the lock (a figure's data read)
        self.waiting = 0
        self._turn = threading.Lock()
        self._counting = threading.Lock()  # guards the counts and the try of `_turn` together

    def full(self) -> QueueFull:
        return QueueFull(self.title, self.detail, self.retry_after)

    @contextmanager
    def reserving(self) -> Iterator[None]:
        """Count one as queued while it prepares: refused before that work when the queue is full."""
        with self._counting:
            if self.reserved + self.waiting >= self.limit:
                raise self.full()
            self.reserved += 1
        try:
            yield
        finally:
            with self._counting:
                self.reserved -= 1

    def __enter__(self) -> None:
        with self._counting:
            if self._turn.acquire(blocking=False):
                return
            if self.waiting >= self.limit:  # not those reserving: one admitted before them may wait here
                raise self.full()
            self.waiting += 1
        try:
            self._turn.acquire()
        finally:
            with self._counting:
                self.waiting -= 1

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._turn.release()


class AsyncTurns:
    """`at_once` turns in the event loop, that at most `limit` wait for, and one client holds or waits for
    at most `per_client` of (more: QueueFull, its 429); one more raises QueueFull."""

    def __init__(
        self, at_once: int, limit: int, title: str, detail: str, retry_after: int, per_client: int, mine: str
    ) -> None:
        self.limit, self.title, self.detail, self.retry_after = limit, title, detail, retry_after
        self.per_client, self.mine = per_client, mine  # mine: the detail of a client's own refusal
        self.waiting = 0
        self.clients: Counter[str] = Counter()  # the turns each client holds or waits for
        self._turns = asyncio.Semaphore(at_once)

    @asynccontextmanager
    async def turn(self, client: str) -> AsyncIterator[None]:
        """A turn for `client` (its address): a slow one holds its own share, not every turn."""
        if self.clients[client] >= self.per_client:
            raise QueueFull(CLIENT_SHARE_FULL, self.mine, self.retry_after, status=429)
        queued = self._turns.locked()
        if queued and self.waiting >= self.limit:
            raise QueueFull(self.title, self.detail, self.retry_after)
        self.clients[client] += 1
        try:
            self.waiting += queued
            try:
                await self._turns.acquire()
            finally:
                self.waiting -= queued
            try:
                yield
            finally:
                self._turns.release()
        finally:
            self.clients[client] -= 1
            if not self.clients[client]:
                del self.clients[client]
