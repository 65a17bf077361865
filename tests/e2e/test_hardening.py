"""What a careless or hostile client can do to a real API process (issue 11): send hundreds of megabytes
unasked, hold connections open without a word, or reach it under another name (DNS rebinding)."""

from __future__ import annotations

import contextlib
import re
import select
import socket
import time

import httpx
import pytest

from tests.support import Service, memory, reset_peak, start_service, wait_for

pytestmark = pytest.mark.slow  # real API processes

HUGE = 300_000_000  # bytes a client sends without being asked to
PIECE = b" " * 1_000_000  # JSON allows leading whitespace: a body the parser would keep reading


def _port(service: Service) -> int:
    return int(service.url.rsplit(":", 1)[1])


def _flood(port: int, path: str, headers: dict[str, str], chunked: bool) -> tuple[int, int, str]:
    """POST up to HUGE bytes, stopping as soon as the server answers or hangs up: (status, bytes sent,
    the answer's head)."""
    framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(HUGE)}
    head = "".join(
        f"{k}: {v}\r\n"
        for k, v in (
            {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json"} | framing | headers
        ).items()
    )
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode())
        piece = f"{len(PIECE):x}\r\n".encode() + PIECE + b"\r\n" if chunked else PIECE
        while sent < HUGE and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(PIECE)
        head = sock.recv(65536).split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return int(head.split()[1]), sent, head


@pytest.mark.parametrize("token", [True, False], ids=["token-set", "no-token"])
def test_300_mb_without_a_token_is_refused_and_the_api_stays_small(tmp_path, token):
    env = {"MLPLAB_API_TOKEN": "s3cret"} if token else {}
    service = start_service(tmp_path, **env)
    try:
        pid = service.api.pid
        with service.client() as client:  # warm: the first requests allocate what every later one reuses
            client.get("/jobs")
        before = memory(pid)["VmRSS"]
        reset_peak(pid)
        answers = []
        for path in ("/jobs", "/sweeps", "/models/1/predict"):
            for chunked in (False, True):
                status, sent, head = _flood(_port(service), path, {}, chunked)
                answers.append((path, chunked, status, sent))
                # answered before the body ended, so the connection ends: no next request is sent into it
                assert "\r\nconnection: close" in head.lower(), head
        peak = memory(pid)["VmHWM"]
        expected = 401 if token else {"/jobs": 413, "/sweeps": 413, "/models/1/predict": 404}
        for path, _chunked, status, sent in answers:
            assert status == (expected if token else expected[path]), answers
            assert sent < 100_000_000, answers  # answered long before the 300 MB were sent
        assert peak - before < 50_000_000, f"{(peak - before) / 1e6:.0f} MB more at the peak; {answers}"
        with service.client() as client:
            assert client.get("/healthz").status_code == 200
    finally:
        service.stop()
    print(
        f"\n300 MB bodies: {answers}; API peak RSS {(peak - before) / 1e6:+.1f} MB over {before / 1e6:.0f} MB"
    )


def test_connections_that_send_nothing_are_closed_and_bounded(tmp_path):
    service = start_service(tmp_path, MLPLAB_KEEP_ALIVE_SECONDS="2", MLPLAB_MAX_CONNECTIONS="40")
    idle: list[socket.socket] = []
    try:
        for _ in range(60):  # more than the limit: all accepted, none says a word
            idle.append(socket.create_connection(("127.0.0.1", _port(service)), timeout=10))
        with service.client() as client:
            full = client.get("/healthz")  # the 41st connection's request
        assert full.status_code == 503, full.text

        def closed_by_server(sock: socket.socket) -> bool:
            try:
                return sock.recv(1) == b""
            except (ConnectionResetError, TimeoutError):
                return False

        started = time.monotonic()
        assert all(closed_by_server(sock) for sock in idle)  # each recv waits for the server's close
        assert time.monotonic() - started < 8
        with service.client() as client:
            assert client.get("/healthz").status_code == 200
            # and a keep-alive connection between requests still gets its keep-alive
            assert [client.get("/healthz").status_code for _ in range(3)] == [200] * 3
    finally:
        for sock in idle:
            sock.close()
        service.stop()


def _answer(sock: socket.socket) -> bytes:
    """What the server says before it closes the connection (b"" when it closes without a word)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_a_request_that_stops_coming_is_answered_408_or_closed(tmp_path):
    """Slowloris: a byte of a head, most of a head, a head and a byte of its body, then nothing."""
    service = start_service(tmp_path, MLPLAB_KEEP_ALIVE_SECONDS="2", MLPLAB_MAX_CONNECTIONS="20")
    port = _port(service)
    head = f"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    starts = [b"G", head.encode(), f"{head}Content-Length: 100\r\n\r\n{{".encode()] * 8  # 24 > the 20
    held: list[socket.socket] = []
    try:
        for start in starts:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(start)
            held.append(sock)
        started = time.monotonic()
        answers = [_answer(sock) for sock in held]  # each waits for the server to close
        assert time.monotonic() - started < 8
        for start, answer in zip(starts, answers, strict=True):
            if b"\r\n\r\n" in start:  # a body that stopped: the app reads a disconnect, the client a 408
                # (or, past the 20 connections, the 503 that says so; it was a close without a word)
                assert answer.startswith((b"HTTP/1.1 408 ", b"HTTP/1.1 503 ")), answer
                assert b" 503 " in answer or b"body paused for 2 s" in answer, answer
            else:
                assert answer.startswith(b"HTTP/1.1 408 "), answer
                assert b"application/problem+json" in answer and b"MLPLAB_KEEP_ALIVE_SECONDS" in answer
                assert b"\r\nx-content-type-options: nosniff\r\n" in answer  # as every answer
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # alone: within the limit
            sock.sendall(starts[2])
            answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"body paused for 2 s" in answer, answer
        with service.client() as client:
            assert client.get("/healthz").status_code == 200
            assert client.get("/jobs").json()["count"] == 0  # the half-sent job was never queued
    finally:
        for sock in held:
            sock.close()
        service.stop()


def test_a_body_that_trickles_is_cut_once_it_has_taken_the_keep_alive(tmp_path):
    """A byte every half second re-armed the pause deadline for ever: a thousand such uploads held every
    connection, and most other users' requests got 503."""
    service = start_service(tmp_path, MLPLAB_KEEP_ALIVE_SECONDS="2")
    port = _port(service)
    head = f"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(head.encode())
            started = time.monotonic()
            cut, answer = None, b""
            while cut is None and time.monotonic() - started < 20:
                try:
                    sock.sendall(b" ")
                except (BrokenPipeError, ConnectionResetError):
                    cut = time.monotonic() - started
                    break
                sock.settimeout(0.5)
                try:
                    answer += (received := sock.recv(65536))
                    if received == b"":
                        cut = time.monotonic() - started
                except TimeoutError:
                    pass
                except ConnectionResetError:
                    cut = time.monotonic() - started
            assert cut is not None and cut < 6, cut  # 2 s of keep-alive, then 8 kB a second on average
            # told why, as a head that stops is (the connection was closed without a word)
            assert answer.startswith(b"HTTP/1.1 408 ") and b"slower than 8 kB/s" in answer, answer
        with service.client() as client:
            assert client.get("/jobs").json()["count"] == 0
    finally:
        service.stop()


def test_one_client_holds_at_most_its_share_of_the_connections(tmp_path):
    """One address's idle connections filled MLPLAB_MAX_CONNECTIONS: everyone's requests got 503."""
    service = start_service(tmp_path, MLPLAB_MAX_CONNECTIONS_PER_CLIENT="5")
    port = _port(service)
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sixth:
            sixth.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            answer = _answer(sixth)
        assert answer.startswith(b"HTTP/1.1 429 "), answer
        assert b"application/problem+json" in answer and b"MLPLAB_MAX_CONNECTIONS_PER_CLIENT" in answer
        other = httpx.HTTPTransport(local_address="127.0.0.2")  # another client: its own share
        with httpx.Client(base_url=service.url, transport=other, timeout=10) as client:
            assert client.get("/healthz").status_code == 200
        held.pop().close()
        time.sleep(0.2)
        with service.client() as client:  # a connection given back is this client's again
            assert client.get("/healthz").status_code == 200
    finally:
        for sock in held:
            sock.close()
        service.stop()


def _head_flood(port: int, where: str) -> tuple[bytes, int]:
    """Up to 100 MB of one header, of a URL, or of a chunked body's trailers: (the answer, bytes sent)."""
    start = {
        "url": b"POST /jobs?x=",
        "header": b"POST /jobs HTTP/1.1\r\nX-Junk: ",
        "trailers": f"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Junk: ".encode(),
    }[where]
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(start)
        # an attacker's trailers go on after the 401 (sent as soon as the head is read)
        while sent < 100_000_000 and (where == "trailers" or not select.select([sock], [], [], 0)[0]):
            try:
                sock.sendall(b"a" * 1_000_000)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1_000_000
        try:
            return sock.recv(65536), sent
        except ConnectionResetError:
            return b"", sent


@pytest.mark.parametrize("where", ["header", "url", "trailers"])
def test_a_huge_request_head_is_431_before_it_is_read(tmp_path, where):
    """httptools keeps a head whole in memory (and uvicorn a chunked body's trailers): 100 MB of them,
    sent without the token to a server that has one, before any check could run."""
    service = start_service(tmp_path, MLPLAB_API_TOKEN="s3cret")
    try:
        pid = service.api.pid
        with service.client() as client:
            client.get("/jobs")
        before = memory(pid)["VmRSS"]
        reset_peak(pid)
        answer, sent = _head_flood(_port(service), where)
        if where == "trailers":  # after the head: the app answered 401, or the connection was cut
            assert answer == b"" or answer.startswith(b"HTTP/1.1 401 "), answer[:200]
        else:
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
            assert b"\r\ncontent-security-policy: default-src 'self'" in answer, answer[:600]
        assert sent < 10_000_000 and memory(pid)["VmHWM"] - before < 20_000_000, (sent, answer[:100])
        with service.client() as client:  # a head of a few kB is still served
            response = client.get("/healthz", headers={"x-long": "a" * 8000})
            assert response.status_code == 200
    finally:
        service.stop()


def test_pipelined_requests_are_served_and_each_head_is_bounded(tmp_path):
    """Several requests in one packet: each answered in turn; a pipelined head past the bound is 431."""
    service = start_service(tmp_path)
    try:
        port = _port(service)
        request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request * 3)
            answers = b""
            while answers.count(b"HTTP/1.1 200 ") < 3:
                answers += sock.recv(65536)
        huge = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Big: {'a' * 200_000}\r\n\r\n".encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request + huge)
            answer = _answer(sock)
        assert answer.count(b"HTTP/1.1 200 ") == 1 and b"HTTP/1.1 431 " in answer, answer[:300]
    finally:
        service.stop()


def test_one_request_is_parsed_at_a_time_and_each_is_answered_in_turn(tmp_path):
    """Pipelining: 4 MB of requests from a client that reads no answer (a reviewer: +640 MB over five such
    connections, every request parsed and queued), answers in order with a big head last, a body that
    dribbles on after its answer, and a chunked upload in 64-byte chunks that must get through."""
    service = start_service(tmp_path, MLPLAB_KEEP_ALIVE_SECONDS="2")
    try:
        pid, port = service.api.pid, _port(service)
        host = f"Host: 127.0.0.1:{port}\r\n"
        get = f"GET /healthz HTTP/1.1\r\n{host}\r\n".encode()
        before = memory(pid)["VmRSS"]
        reset_peak(pid)
        floods = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        for sock in floods:
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.send(get * (4_000_000 // len(get)))
        time.sleep(2)
        assert memory(pid)["VmHWM"] - before < 50_000_000
        for sock in floods:
            sock.close()

        post = f"POST /jobs HTTP/1.1\r\n{host}Content-Type: application/json\r\nContent-Length: 20\r\n\r\n"
        big = f"GET /healthz HTTP/1.1\r\n{host}X-Big: {'a' * 140_000}\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(post.encode() + b'{"backend": "numpy"}' + get + big.encode())
            statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", _answer(sock))  # each follows the last body
        assert statuses == [b"202", b"200", b"431"]

        with socket.create_connection(
            ("127.0.0.1", port), timeout=10
        ) as sock:  # answered, then a byte a second
            sock.sendall(f"GET /healthz HTTP/1.1\r\n{host}Content-Length: 1000\r\n\r\n".encode())
            started = time.monotonic()
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                for _ in range(20):
                    time.sleep(1)
                    sock.sendall(b"x")
            assert time.monotonic() - started < 6

        body = b" " * 980_000 + b'{"backend": "numpy", "epochs": 1, "train_limit": 100}'
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 64]), body[i : i + 64]) for i in range(0, len(body), 64)
        )
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            head = f"POST /jobs HTTP/1.1\r\n{host}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            sock.sendall(head.encode() + chunks + b"0\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 202 ")
    finally:
        service.stop()


def test_a_client_that_reads_none_of_its_answers_is_let_go(tmp_path):
    """Requests for megabytes of answers, none of them read: the server's writes stall, and after the
    keep-alive the connection is dropped, so such clients cannot hold the places they took."""
    # 4 s: on a loaded machine the first client's 2 s could run out before the check that it holds its place
    service = start_service(tmp_path, MLPLAB_KEEP_ALIVE_SECONDS="4", MLPLAB_MAX_CONNECTIONS="3")
    port = _port(service)
    get = f"GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    held: list[socket.socket] = []
    try:
        for _ in range(2):  # two places of three; a request on the third finds the limit
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(get * 400)  # far more answer than the socket buffers hold
            held.append(sock)
            time.sleep(0.5)  # until its writes stall
        with service.client() as client:
            assert client.get("/healthz").status_code == 503
            started = time.monotonic()
            wait_for(lambda: client.get("/healthz").status_code == 200, timeout=15)
            assert time.monotonic() - started < 8
    finally:
        for sock in held:
            sock.close()
        service.stop()


def test_only_the_names_it_answers_to_are_served(tmp_path):
    """DNS rebinding: a page on rebind.evil.example whose name now resolves to this machine."""
    service = start_service(tmp_path, host="127.0.0.2")  # not a default name: it is the connection's address
    try:
        with service.client() as client:
            job = client.post("/jobs", json={"backend": "numpy"}).json()["id"]
            port = _port(service)
            for host in (f"127.0.0.2:{port}", f"localhost:{port}", "127.0.0.1"):
                assert client.get(f"/jobs/{job}", headers={"host": host}).status_code == 200, host
            for path in (f"/jobs/{job}", "/jobs/", "/models", "/"):
                response = client.get(path, headers={"host": f"rebind.evil.example:{port}"})
                assert response.status_code == 400 and "location" not in response.headers, (
                    path,
                    response.text,
                )
                assert response.headers["content-type"] == "application/problem+json"
            refused = client.post(f"/jobs/{job}/cancel", headers={"host": "rebind.evil.example"})
            assert refused.status_code == 400
            assert client.get(f"/jobs/{job}").json()["status"] == "queued"
        # What a client library would not send: two Host headers (a proxy might read the other one)
        with socket.create_connection(("127.0.0.2", port), timeout=10) as sock:
            two = b"Host: localhost\r\nHost: rebind.evil.example\r\n"
            sock.sendall(b"POST /jobs/%d/cancel HTTP/1.1\r\n%sConnection: close\r\n\r\n" % (job, two))
            answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 400 ") and b"Bad Host" in answer, answer
        # none at all: HTTP/1.1 requires it (RFC 9112 3.2), HTTP/1.0 had none; an empty one is no origin
        # that Origin: null shares (a sandboxed page's write reached the route)
        for request, status in (
            (b"GET /jobs HTTP/1.1\r\nConnection: close\r\n\r\n", b"400 "),
            (b"GET /jobs HTTP/1.0\r\n\r\n", b"200 "),
            (
                b"POST /jobs/%d/cancel HTTP/1.1\r\nHost:\r\nOrigin: null\r\nConnection: close\r\n\r\n" % job,
                b"403 ",
            ),
        ):
            with socket.create_connection(("127.0.0.2", port), timeout=10) as sock:
                sock.sendall(request)
                answer = _answer(sock)
            assert answer.startswith(b"HTTP/1.1 " + status), (request, answer)
        with service.client() as client:
            assert client.get(f"/jobs/{job}").json()["status"] == "queued"
    finally:
        service.stop()


def test_the_host_list_is_a_setting(tmp_path):
    service = start_service(tmp_path, MLPLAB_ALLOWED_HOSTS="mlplab.example.com")
    try:
        with service.client() as client:
            assert client.get("/healthz", headers={"host": "mlplab.example.com"}).status_code == 200
            assert client.get("/healthz", headers={"host": "localhost"}).status_code == 400
            assert client.get("/healthz").status_code == 200  # 127.0.0.1: the address it arrived on
    finally:
        service.stop()


def test_head_answers_as_get_without_a_body_and_holds_no_event_stream(tmp_path):
    """Uptime checkers send HEAD; it was a 405 on every API route. One event stream allowed: a HEAD
    of a queued job's events that kept following the job would leave none for the next request.
    A dashboard file's Range is ignored, as RFC 9110 allows (a malformed one was a text/plain 400)."""
    service = start_service(tmp_path, MLPLAB_MAX_STREAMS="1")
    try:
        with service.client() as client:
            job = client.post("/jobs", json={"backend": "numpy"}).json()["id"]  # no worker: it stays queued
            for path in (
                "/healthz",
                "/jobs",
                f"/jobs/{job}",
                "/openapi.json",
                "/",
                "/docs",
                "/static/app.css",
            ):
                got, head = client.get(path), client.head(path)
                assert got.status_code == head.status_code == 200, (path, head.text)
                assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"]
                if "content-length" in got.headers and path != "/healthz":
                    assert head.headers["content-length"] == got.headers["content-length"], path
            assert client.head("/jobs/999").status_code == 404
            for page in ("/static/app.css", "/", "/static/vendor/plotly.min.js", "/jobs"):
                whole = client.get(page).content
                for bad_range in ("bytes=abc", "items=0-1", "bytes=99999999-", "bytes=0-1"):
                    ranged = client.get(page, headers={"range": bad_range})
                    assert ranged.status_code == 200 and ranged.content == whole, (page, bad_range)
                    # and none offered: a resumed download of plotly restarted from 0 after "bytes"
                    assert ranged.headers.get_list("accept-ranges") == ["none"], ranged.headers
            # counted under the route GET matched, as an uptime checker's traffic should be
            metrics = client.get("/metrics").text
            for route in ("/healthz", "/jobs/{job_id}"):
                assert (
                    f'mlplab_http_requests_total{{method="HEAD",route="{route}",status="200"}} 1.0' in metrics
                )
            assert client.head("/metrics").status_code == 200
            for _ in range(3):
                head = client.head(f"/jobs/{job}/events", timeout=5)
                assert head.status_code == 200 and head.headers["content-type"].startswith(
                    "text/event-stream"
                )
            with client.stream("GET", f"/jobs/{job}/events") as stream:
                assert stream.status_code == 200
                assert next(stream.iter_lines()).startswith("retry:")
    finally:
        service.stop()
