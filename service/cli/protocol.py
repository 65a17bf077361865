"""The API's HTTP protocol: uvicorn's httptools protocol with deadlines and a bound on a request's head.

uvicorn arms its keep-alive timeout only between requests and cancels it at the first byte received, and
httptools keeps a request's head (URL and headers) in memory however long it grows. So a connection
that sent one byte, or half a body, was held until its client let go, and an unauthenticated client
could make the API buffer a 100 MB header before any check ran (docs/reliability.md, "Idle
connections"). Here:
- a connection must send a request's whole head within MLPLAB_KEEP_ALIVE_SECONDS of opening or of its
  previous response (else 408), and a body may pause no longer than that between two pieces;
- a head over MAX_HEAD_BYTES is answered 431 before more of it is read.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024  # a request line and headers; browsers send a few kB


def _problem(status: int, title: str, detail: str) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, its body RFC 9457 problem+json."""
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {title}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class HttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_open = True  # from the end of one request (or the connection's start) to its head's end
        self._head_bytes = 0  # of that head, so far
        self._heads = 0  # request heads completed on this connection
        self._receiving_body = False
        self._arm()  # the first request's head is due, as every later one's is after a response

    def _arm(self) -> None:
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self._too_slow)

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn cancels the deadline at any byte received; it stays until the head is whole.
        if not self._head_open:
            super()._unset_keepalive_if_required()

    def _too_slow(self) -> None:
        if self.transport.is_closing():
            return
        if self._receiving_body and self.flow.read_paused:
            self._arm()  # the app has not taken what came: the wait is ours, not the client's
            return
        if self._head_open and self._head_bytes:
            seconds = self.timeout_keep_alive
            detail = f"The request's head did not arrive within {seconds} s (MLPLAB_KEEP_ALIVE_SECONDS)."
            self.transport.write(_problem(408, "Request Timeout", detail))
        self.transport.close()  # idle, or a body that stopped coming: the app sees a disconnect

    def data_received(self, data: bytes) -> None:
        rest = b""
        if self._head_open:
            room, heads = MAX_HEAD_BYTES - self._head_bytes, self._heads
            self._head_bytes += min(len(data), room)
            data, rest = data[:room], data[room:]
            super().data_received(data)
            if self._heads == heads and len(data) == room and not self.transport.is_closing():
                detail = f"A request's line and headers may hold at most {MAX_HEAD_BYTES} bytes."
                self.transport.write(_problem(431, "Request Header Fields Too Large", detail))
                self.transport.close()
        else:
            super().data_received(data)
        if self.transport.is_closing():
            return
        if self._receiving_body:
            self._arm()  # a body may pause, but not for longer than the deadline
        if rest:
            self.data_received(rest)  # the head ended within the room: the rest is body or the next request

    def on_headers_complete(self) -> None:
        self._heads += 1
        self._head_open = False
        self._receiving_body = True
        super()._unset_keepalive_if_required()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._receiving_body = False
        super()._unset_keepalive_if_required()
        self._head_open, self._head_bytes = True, 0  # the next request's head may follow at once
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timer unless a pipelined request runs
        if not self.transport.is_closing() and self.timeout_keep_alive_task is not None:
            self._arm()  # the same deadline, answered 408 when part of a head came
