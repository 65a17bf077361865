"""Queues for costly work that every client shares (figures drawn, studies' first trials planned, large
uploads read and decoded): so many at once, at most `limit` waiting for a turn, and one more refused at
once, before its work, with a 503 and Retry-After (errors.py), so that one client's burst (or a foreign
page's) cannot hold the API's threads or memory, nor queue every other user's request behind its own;
and one client address holds at most its share of a queue's places (more: a 429), so that its burst
leaves the rest to others.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import threading
from collections import Counter
from collections.abc import AsyncIterator, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from types import TracebackType

CLIENT_SHARE_FULL = "Too many requests from this client"  # the title of a client's refusal past its share
CLIENT_KEY_CHARS = 45  # the longest client key: an IPv6 address's text (the store's column holds 64)


def client_key(address: str) -> str:
    """The key a client's shares are counted by: its IPv4 address; for IPv6 its /64, the block one host
    is given; anything else a trusted proxy forwarded as itself, or a digest past CLIENT_KEY_CHARS (the
    store keeps it)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        if len(address) <= CLIENT_KEY_CHARS:
            return address
        return "sha256:" + hashlib.sha256(address.encode()).hexdigest()[: CLIENT_KEY_CHARS - 7]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if not ip.is_loopback:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def share_full(mine: str) -> str:
    """How an OpenAPI 429 names a queue's per-client refusal (its title and `mine`, its detail)."""
    return f"{CLIENT_SHARE_FULL}: {mine}"


# The address of the client whose request this context serves (set by api/guard.py for each request): a
# queue counts each client's share by it. Threads the request's work runs in inherit it.
CLIENT: ContextVar[str | None] = ContextVar("mlplab_client", default=None)  # None: the process's own work


class QueueFull(Exception):
    """The work's queue (or a client's share of it: 429) already holds its most: 503 with Retry-After."""

    def __init__(self, title: str, detail: str, retry_after: int, status: int = 503) -> None:
        super().__init__(detail)
        self.title, self.retry_after, self.status = title, retry_after, status


class Shares:
    """How many pieces of work each client has asked for and not had yet (preparing, waiting or being
    done), at most `per_client`: one more is a 429 that says `mine`, so that one client's burst leaves the
    rest of the queue to others. Requests of one client for the same piece (one figure) count once."""

    def __init__(self, per_client: int, mine: str, retry_after: int) -> None:
        self.per_client, self.mine, self.retry_after = per_client, mine, retry_after
        self.held: Counter[str | None] = Counter()  # distinct pieces, by client
        self.asking: Counter[tuple[str | None, Hashable]] = Counter()  # requests, by client and piece

    def take(self, client: str | None, work: Hashable) -> None:
        """One more request of `client` for `work`; QueueFull (429) when it is a new piece past the share
        (None: no request's, the process's own work, has no share)."""
        if not self.asking[(client, work)]:
            if client is not None and self.held[client] >= self.per_client:
                raise QueueFull(CLIENT_SHARE_FULL, self.mine, self.retry_after, status=429)
            self.held[client] += 1
        self.asking[(client, work)] += 1

    def give(self, client: str | None, work: Hashable) -> None:
        self.asking[(client, work)] -= 1
        if not self.asking[(client, work)]:
            del self.asking[(client, work)]
            self.held[client] -= 1
            if not self.held[client]:
                del self.held[client]


class Turns:
    """A lock (threads) that at most `limit` queue for, in its work's first part (`reserving`) or waiting,
    one more raising QueueFull; and a client (CLIENT) asks for at most `per_client` pieces of its work at
    once (`place`), one more raising QueueFull's 429."""

    def __init__(
        self, limit: int, title: str, detail: str, retry_after: int, per_client: int, mine: str
    ) -> None:
        self.limit, self.title, self.detail, self.retry_after = limit, title, detail, retry_after
        self.shares = Shares(per_client, mine, retry_after)
        self.reserved = 0  # admitted, doing what comes before the lock (a figure's data read)
        self.waiting = 0
        self._turn = threading.Lock()
        self._counting = threading.Lock()  # guards the counts and the try of `_turn` together

    def full(self) -> QueueFull:
        return QueueFull(self.title, self.detail, self.retry_after)

    @contextmanager
    def place(self, work: Hashable | None = None) -> Iterator[None]:
        """This request's client's place while it asks for `work` (a figure's key; None: its own) and waits
        for it, done for another request too: one past its share is refused at once, before any work."""
        client, work = CLIENT.get(), object() if work is None else work
        with self._counting:
            self.shares.take(client, work)
        try:
            yield
        finally:
            with self._counting:
                self.shares.give(client, work)

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
    """`at_once` turns in the event loop, that at most `limit` wait for, and one client (CLIENT) holds or
    waits for at most `per_client` of; one more raises QueueFull."""

    def __init__(
        self, at_once: int, limit: int, title: str, detail: str, retry_after: int, per_client: int, mine: str
    ) -> None:
        self.limit, self.title, self.detail, self.retry_after = limit, title, detail, retry_after
        self.shares = Shares(per_client, mine, retry_after)
        self.waiting = 0
        self._turns = asyncio.Semaphore(at_once)

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """A turn for this request's client: a slow one holds its own share, not every turn."""
        client, work = CLIENT.get(), object()
        queued = self._turns.locked()
        self.shares.take(client, work)  # its share's 429 before the queue's 503
        if queued and self.waiting >= self.limit:
            self.shares.give(client, work)
            raise QueueFull(self.title, self.detail, self.retry_after)
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
            self.shares.give(client, work)
