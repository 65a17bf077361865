"""The API's HTTP protocol: uvicorn's httptools protocol with deadlines and a bound on a request's head.

uvicorn arms its keep-alive timeout only between requests and cancels it at the first byte received, and
httptools keeps a request's head (URL and headers) in memory however long it grows. So a connection
that sent one byte, or half a body, was held until its client let go, and an unauthenticated client
could make the API buffer a 100 MB header before any check ran (docs/reliability.md, "Idle
connections"). Here:
- a connection must send a request's whole head within MLPLAB_KEEP_ALIVE_SECONDS of opening or of its
  previous response (else 408), and a body may pause no longer than that between two pieces, nor, past
  that long, arrive slower than MIN_BODY_RATE on average (else 408 too, or a close once an answer began);
- one client address holds at most MLPLAB_MAX_CONNECTIONS_PER_CLIENT connections (more: 429, closed);
- a head, or the chunk lines and trailers between two pieces of body, reaching MAX_HEAD_BYTES is answered
  431 (closed, when its response has begun) before more of it is read;
- one request is parsed at a time: while one waits for the answer before it, the rest stays unread;
- a body that goes on after its answer is not waited for, nor a client that stops reading its answer;
  that answer says "connection: close", so that no client sends its next request into the drop.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from http import HTTPStatus
from typing import Any, cast

from uvicorn._types import ASGISendEvent, HTTPResponseStartEvent
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from service.api.security import SECURITY_HEADERS
from service.api.streams import end_streams
from service.errors import PROBLEM_JSON, UNAVAILABLE_RETRY_SECONDS, Problem
from service.settings import get_settings

MAX_HEAD_BYTES = 64 * 1024  # a request line and headers; browsers send a few kB
LINGER_SECONDS = 1.0  # after a refusal, what the client still sends is read and dropped this long,
LINGER_BYTES = 1 << 20  # and this much at most
# A body's least average rate once it has taken MLPLAB_KEEP_ALIVE_SECONDS (a 5 MB upload: 10 minutes):
# a byte every few seconds kept each of a thousand connections, and the API's every slot, for ever.
MIN_BODY_RATE = 8 * 1024  # bytes a second


def _problem_body(status: int, detail: str) -> bytes:
    """Its title the status's phrase in the app's sentence case ('Bad request', as errors.py titles it)."""
    title = HTTPStatus(status).phrase.capitalize()
    return Problem(title=title, status=status, detail=detail).model_dump_json(exclude_none=True).encode()


def _problem(status: int, detail: str) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, its body RFC 9457 problem+json."""
    body = _problem_body(status, detail)
    security = "".join(f"{name}: {value}\r\n" for name, value in SECURITY_HEADERS.items())  # as every answer
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: {PROBLEM_JSON}\r\n{security}"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _closing_problem(status: int, detail: str, *more: tuple[bytes, bytes]) -> list[Any]:
    """The two ASGI messages of a problem+json response that closes its connection."""
    body = _problem_body(status, detail)
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()),
        *more,
    ]
    start = {"type": "http.response.start", "status": status, "headers": headers}
    return [start, {"type": "http.response.body", "body": body, "more_body": False}]


async def _overloaded(scope: Any, receive: Any, send: Callable[[Any], Awaitable[None]]) -> None:
    """uvicorn's answer past MLPLAB_MAX_CONNECTIONS (its own is text/plain), with when to try again."""
    detail = "This server holds as many connections as it serves (MLPLAB_MAX_CONNECTIONS): try again shortly."
    retry = (b"retry-after", str(UNAVAILABLE_RETRY_SECONDS).encode())
    for message in _closing_problem(503, detail, retry):
        await send(message)


class HttpProtocol(HttpToolsProtocol):
    open_by_client: Counter[str] = Counter()  # this process's connections by client address

    def _unsupported_upgrade_warning(self) -> None:
        # WebSockets are off (serve.py, ws="none"): uvicorn's two warnings a request, one saying the
        # library is missing, were a client's to repeat without end
        pass

    def shutdown(self) -> None:
        end_streams()  # uvicorn's shutdown: open event streams end now, whole, not cut past its grace period
        super().shutdown()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self._client = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.open_by_client[self._client] += 1
        self._body_since, self._body_bytes = 0.0, 0  # when this request's body began, and how much came
        self._head_open = True  # from the end of one request (or the connection's start) to its head's end
        self._overhead = 0  # bytes since the last body bytes that are not body: a head, chunk lines, trailers
        self._begun = self._ended = self._bodied = (
            False  # while the parser read: a request began, ended, had body
        )
        self._receiving_body = False
        self._held = b""  # read, not yet parsed: the request before it waits for its answer
        self._dropping, self._dropped = False, 0  # refused: what comes is read and dropped (bytes)
        self._after_response: bytes | None = None  # a refusal to send once the response under way is sent
        self._closing = False  # a response said "connection: close": the connection ends with it
        self._unread: asyncio.TimerHandle | None = None  # while the client reads none of its answer
        self._arm()  # the first request's head is due, as every later one's is after a response
        most = get_settings().max_connections_per_client
        if self.open_by_client[self._client] > most:
            detail = (
                f"This client holds {most} connections to this server already (MLPLAB_MAX_CONNECTIONS_PER_CLIENT): "
                "close some, or reuse them."
            )
            self._refuse(_problem(429, detail))

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self.timeout_keep_alive_task, self._unread):
            if timer is not None:
                timer.cancel()
        self.open_by_client[self._client] -= 1
        if not self.open_by_client[self._client]:
            del self.open_by_client[self._client]
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._unread is not None:
            self._unread.cancel()
        self._unread = self.loop.call_later(self.timeout_keep_alive, self._watch_unread, self._unsent())

    def _unsent(self) -> int:
        return self.transport.get_write_buffer_size()

    def _watch_unread(self, pending: int) -> None:
        """While writes are paused: a client that read nothing of its answer for as long as a request's
        head may take is dropped; one that reads slowly gets the same time again after each bit read."""
        if self._unsent() >= pending:
            self.transport.abort()
        else:
            self._unread = self.loop.call_later(self.timeout_keep_alive, self._watch_unread, self._unsent())

    def resume_writing(self) -> None:
        if self._unread is not None:
            self._unread.cancel()
            self._unread = None
        super().resume_writing()

    def _arm(self) -> None:
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self._too_slow)

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn cancels the deadline at any byte received; it stays until the head is whole.
        if not self._head_open:
            super()._unset_keepalive_if_required()

    def timeout_keep_alive_handler(self) -> None:
        # uvicorn arms this after each response: the next head is due within the same deadline (408
        # when part of it came), as _arm's is.
        self._too_slow()

    def _too_slow(self) -> None:
        if self.transport.is_closing() or self._dropping:
            return
        cycle = self.cycle
        if self._receiving_body and (self.flow.read_paused or (cycle and cycle.waiting_for_100_continue)):
            self._arm()  # the app has not taken what came, or not asked for the body: the wait is ours
            self._body_since, self._body_bytes = self.loop.time(), 0  # nor is the time, for its rate
            return
        seconds = self.timeout_keep_alive
        if self._head_open and self._overhead and self._app_done():
            detail = f"The request's head did not arrive within {seconds} s (MLPLAB_KEEP_ALIVE_SECONDS)."
            self._refuse(_problem(408, detail))
        elif self._receiving_body:
            self._cut_body(
                f"The request's body paused for {seconds} s (MLPLAB_KEEP_ALIVE_SECONDS): send it whole."
            )
        else:
            self.transport.close()  # idle between requests

    def _cut_body(self, detail: str) -> None:
        """A body that stopped coming, or trickles: 408 while no answer has begun (the app reads a
        disconnect, and what it answers to that is dropped), else the connection closed."""
        cycle = self.cycle
        if cycle is None or cycle.response_started:
            self.transport.close()
            return
        cycle.disconnected = True
        cycle.message_event.set()
        self._refuse(_problem(408, detail))

    def _trickling(self) -> bool:
        """The body, past the keep-alive, has come slower than MIN_BODY_RATE on average."""
        late = self.loop.time() - self._body_since - self.timeout_keep_alive
        return late > 0 and self._body_bytes < MIN_BODY_RATE * late

    def _app_done(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _answered_early(self) -> bool:
        """The request was answered before its body ended: the rest of the body is not waited for."""
        return self._receiving_body and self.cycle is not None and self.cycle.response_complete

    def _refuse(self, answer: bytes | None = None) -> None:
        """Answer (if there is one), then read and drop what the client still sends for a moment before
        closing: closing with its bytes unread would reset the connection, and the client lose the answer."""
        self._dropping, self._held = True, b""
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
        if answer is not None:
            self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def data_received(self, data: bytes) -> None:
        # Fed to the parser a piece at a time, never past what the non-body bytes may still grow by
        # (httptools keeps a head, and uvicorn a chunked body's trailers, whole in memory), and one request
        # at a time: while one waits for the answer before it, the rest is held, unparsed and unread.
        if self._dropping:
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self.transport.close()
            return
        data = self._held + data
        self._held = b""
        while data and not self.transport.is_closing() and not self._dropping:
            if self.pipeline:
                self._held = data
                self.flow.pause_reading()
                return
            piece, data = data[: MAX_HEAD_BYTES - self._overhead], data[MAX_HEAD_BYTES - self._overhead :]
            self._ended = self._bodied = False
            super().data_received(piece)
            if self._ended or self._bodied:
                # a request ended or body came: count from there on, only whether a next head has begun
                self._overhead = int(self._head_open and self._begun)
            else:
                self._overhead += len(piece)
            if self.transport.is_closing():
                return
            if self._overhead >= MAX_HEAD_BYTES:
                self._too_large()
                return
            if self._answered_early():
                self._refuse()
                return
            if self._receiving_body:
                if self._trickling():
                    rate = f"{MIN_BODY_RATE // 1024} kB/s"
                    self._cut_body(
                        f"The request's body came slower than {rate} past its first {self.timeout_keep_alive} s."
                    )
                    return
                self._arm()  # a body may pause, but not for longer than the deadline

    def send_400_response(self, msg: str) -> None:
        """A request httptools cannot parse, in problem+json like every other refusal (uvicorn's is text)."""
        detail = "The request is not valid HTTP/1.1: its request line, a header or its chunked framing could not be parsed."
        self._refuse_in_turn(_problem(400, detail))

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # every request's cycle passes here, pipelined ones too: its 500 and uvicorn's 503 in problem+json
        cycle.send_500_response = self._crashed(cycle)  # type: ignore[method-assign]
        super()._start_asgi_task(cycle, _overloaded if app is service_unavailable else app)

    @staticmethod
    def _crashed(cycle: RequestResponseCycle) -> Callable[[], Coroutine[Any, Any, None]]:
        """cycle.send_500_response: what uvicorn sends when the app raised before it began an answer (as
        when the server stops mid-upload), in problem+json."""
        request = weakref.ref(cycle)  # weak: as _closing_if_early's

        async def send_500() -> None:
            detail = "The server failed before it could answer (it may be stopping): try again shortly."
            for message in _closing_problem(500, detail):
                if (owner := request()) is not None:
                    await owner.send(message)

        return send_500

    def _too_large(self) -> None:
        detail = f"A request's line and headers, or its chunk lines and trailers, may hold under {MAX_HEAD_BYTES} bytes."
        self._refuse_in_turn(_problem(431, detail))

    def _refuse_in_turn(self, answer: bytes) -> None:
        """Refuse what is being read: in a body, with `answer` unless its response has begun; in the head
        of a request pipelined behind one still being answered, once that answer is sent."""
        if not self._head_open:
            self._refuse(None if self.cycle and self.cycle.response_started else answer)
        elif self._app_done():
            self._refuse(answer)
        else:  # the request before this head is still being answered
            self._dropping, self._after_response = True, answer

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._receiving_body = True
        self._body_since, self._body_bytes = self.loop.time(), 0
        super()._unset_keepalive_if_required()
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not before:  # a request's cycle, its app not yet run
            self.cycle.send = self._closing_if_early(self.cycle)  # type: ignore[method-assign,assignment]

    def _closing_if_early(
        self, cycle: RequestResponseCycle
    ) -> Callable[[ASGISendEvent], Coroutine[Any, Any, None]]:
        """cycle.send, adding "connection: close" to a response that starts before its request's body
        has ended: the connection ends with that response (_refuse), and a client that sent its next
        request on it would see the connection close unanswered."""
        # Weak: a cycle whose own send held it (or this protocol) would wait for a full collection.
        request, protocol = weakref.ref(cycle), weakref.ref(self)

        async def send_closing(message: ASGISendEvent) -> None:
            cycle = request()
            if cycle is None:  # gone with its connection
                return
            if message["type"] != "http.response.start" or not cycle.more_body:
                return await RequestResponseCycle.send(cycle, message)
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
            headers.append((b"connection", b"close"))
            await RequestResponseCycle.send(
                cycle, cast(HTTPResponseStartEvent, {**message, "headers": headers})
            )
            # uvicorn would close at the response's end, resetting a connection with body unread and
            # losing the answer; _refuse ends it after the answer instead.
            cycle.keep_alive = True
            if (owner := protocol()) is not None:
                owner._closing = True

        return send_closing

    def on_body(self, body: bytes) -> None:
        self._bodied = True
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_begin(self) -> None:
        self._begun = True
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._receiving_body = False
        super()._unset_keepalive_if_required()
        self._head_open, self._ended, self._begun = True, True, False  # the next head may follow at once
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self._closing or self._answered_early():
            self.pipeline.clear()  # the connection ends with this response: no request after it starts
        super().on_response_complete()  # starts a pipelined request, or arms the next head's deadline
        if self.transport.is_closing():
            return
        if self._after_response is not None:
            self._refuse(self._after_response)
        elif self._answered_early() or self._closing:
            self._refuse()
        elif self._held and self._app_done():
            self.loop.call_soon(self.data_received, b"")  # the held request's turn
