"""At most N requests inside the app at once; the rest wait their turn in the event loop.

A request holds one database connection from its first dependency to its response, across
several hops through the thread pool. Bounding the requests in flight bounds the connections an
API process opens (make_engine caps the pool at the same number), so a burst queues here instead
of passing PostgreSQL's max_connections ("too many clients", a 500). And as no request then
waits for a connection, none can hold a pool thread while the request holding its connection
waits for a thread: the deadlock a capped pool alone had.
"""

from __future__ import annotations

import asyncio
import re

from starlette.types import ASGIApp, Receive, Scope, Send

# Outside the limit: liveness (no database), and event streams, which last as long as a job
# and take a slot only for each of their short reads (routes/events.py).
EXEMPT = re.compile(r"^/healthz$|^/jobs/[^/]+/events$")


class InFlightLimit:
    def __init__(self, app: ASGIApp, slots: asyncio.Semaphore):
        self.app = app
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or EXEMPT.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        async with self.slots:
            await self.app(scope, receive, send)
