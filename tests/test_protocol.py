"""The answers uvicorn itself gives, before or instead of the app (a request it cannot parse, one past
MLPLAB_MAX_CONNECTIONS, an app that fails before it answers): problem+json, as every other error, not
uvicorn's text/plain."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn

from service.cli.protocol import HttpProtocol
from service.errors import PROBLEM_JSON, UNAVAILABLE_RETRY_SECONDS
from tests.support import free_port, wait_for


async def _app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/fails":  # as an upload cut off by the server stopping
        raise RuntimeError("failed before answering")
    if scope["path"] == "/slow":
        await asyncio.sleep(1)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


SERVERS: dict[int, uvicorn.Server] = {}  # by port: a test may wait on what its server has seen


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        _app, host="127.0.0.1", port=port, http=HttpProtocol, limit_concurrency=2, log_level="critical"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10)
    SERVERS[port] = server
    yield port
    server.should_exit = True
    thread.join(10)


def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, body = answer.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    "request_",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    ],
    ids=["request line", "header name", "version", "two lengths", "chunk size"],
)
def test_a_request_that_is_not_http_is_a_problem_400(port, request_):
    status, headers, body = _exchange(port, request_)
    assert (status, headers["content-type"], headers["connection"]) == (400, PROBLEM_JSON, "close")
    assert json.loads(body)["detail"].startswith("The request is not valid HTTP/1.1"), body


def test_an_app_that_fails_before_answering_is_a_problem_500(port):
    status, headers, body = _exchange(port, b"GET /fails HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (status, headers["content-type"]) == (500, PROBLEM_JSON), body
    assert json.loads(body)["title"] == "Internal server error"  # as the app's own 500 titles it


def test_a_connection_past_the_limit_is_a_problem_503_saying_when_to_retry(port):
    # limit 2, the connection asking counted: one slow request held makes the next connection one too many.
    # Two held raced on a loaded machine: each could find the other open, both were refused, the third served.
    held = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        held.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        wait_for(lambda: len(SERVERS[port].server_state.tasks) >= 1, 10, "the slow request running")
        status, headers, body = _exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    finally:
        held.close()
    retry = str(UNAVAILABLE_RETRY_SECONDS)
    assert (status, headers.get("content-type"), headers.get("retry-after")) == (503, PROBLEM_JSON, retry), (
        headers,
        body,
    )
    assert "MLPLAB_MAX_CONNECTIONS" in json.loads(body)["detail"]
    wait_for(
        lambda: _exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")[0] == 200, 10, "a 200 once they go"
    )


def test_an_unparsable_request_pipelined_behind_another_is_refused_after_its_answer(port):
    """The 400 was sent at once, ahead of the answer to the valid request before it, which never came."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1 ") == 2, answer
    assert b"HTTP/1.1 400 Bad Request\r\n" in answer.split(b"ok", 1)[1], answer
