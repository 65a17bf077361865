"""The API's HTTP protocol: uvicorn's httptools protocol, with its keep-alive timeout armed from the
moment a connection opens. uvicorn arms it only once a response is sent, so a connection that never
sends a request was held until its client let go (docs/reliability.md, "Idle connections")."""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # The first bytes received cancel it, as they cancel the timer between requests.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )
