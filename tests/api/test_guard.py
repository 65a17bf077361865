"""What is refused before a body is read (service/api/guard.py): unknown hosts, cross-site writes, a missing
token, bodies over their limit; each as problem+json, each changing nothing."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings
from tests.conftest import assert_problem

TOKEN = "s3cret-token"
BEARER = {"authorization": f"Bearer {TOKEN}"}
JOB = {"backend": "numpy"}


def _with(settings: Settings, **update) -> Settings:
    return Settings(**(settings.model_dump() | update))  # validated, as the environment's would be


def _client(settings: Settings, **update) -> TestClient:
    return TestClient(create_app(_with(settings, **update)))


def _job_count(client) -> int:
    return client.get("/jobs", headers=BEARER).json()["count"]


# --- the body limit -----------------------------------------------------------------------------


def _chunks(data: bytes, size: int = 1000):
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/jobs", "/sweeps"])
def test_a_json_body_over_the_limit_is_413_naming_the_setting(settings, path, declared):
    big = b'{"backend": "numpy", "name": "' + b"x" * 5000 + b'"}'
    with _client(settings, max_body_bytes=4000) as client:
        content = big if declared else _chunks(big)
        response = client.post(path, content=content, headers={"content-type": "application/json"})
        problem = assert_problem(response, 413, "the limit is 4,000 bytes", "MLPLAB_MAX_BODY_BYTES")
        assert problem["title"] == "Content too large"
        # declared, its size; chunked, what had come when it passed the limit (was "over" that)
        size = f"The body is {len(big):,} bytes" if declared else "The body is at least "
        assert problem["detail"].startswith(size), problem
        assert _job_count(client) == 0
        small = client.post("/jobs", json=JOB)  # under the limit: as before
        assert small.status_code == 202, small.text


def _call(app, method: str, path: str, headers: dict[str, str]) -> tuple[int, bool]:
    """Send one request straight to the ASGI app: (status, whether the app asked for the body)."""
    asked = False
    sent: list[dict] = []

    async def receive():
        nonlocal asked
        asked = True
        return {"type": "http.request", "body": b'{"backend": "numpy"}', "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": "localhost", **headers}.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], asked


@pytest.mark.parametrize("path", ["/jobs", "/sweeps", "/models/1/predict", "/jobs/1/cancel"])
def test_with_a_token_set_a_write_without_it_is_refused_before_its_body_is_read(settings, path):
    app = create_app(_with(settings, api_token=TOKEN))
    assert _call(app, "POST", path, {"content-length": "20"}) == (401, False)
    assert _call(app, "POST", path, {"content-length": "20", "authorization": "Bearer wrong"}) == (401, False)


# --- cross-site requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"origin": "http://localhost:9999"},  # same site, another origin: another port
        {"origin": "null"},  # a sandboxed frame or a file: page
        {"sec-fetch-site": "cross-site"},  # the browser says so, Origin or not
        {"sec-fetch-site": "same-site"},  # a sibling name's page is not this origin either
        {"origin": "http://["},  # an Origin that does not parse is no page of this server's (it was a 500)
        {"origin": "http://[x]"},
    ],
)
def test_a_cross_site_write_is_refused_and_changes_nothing(settings, headers):
    with _client(settings) as client:
        job = client.post("/jobs", json=JOB).json()
        for method, path, body in [
            ("POST", "/jobs", JOB),
            ("POST", f"/jobs/{job['id']}/cancel", None),  # a body-less POST: no preflight in a browser
            ("POST", "/sweeps", {"grid": {"seed": [1, 2]}}),
        ]:
            response = client.request(method, path, json=body, headers=headers)
            problem = assert_problem(response, 403, "may not change anything here", "MLPLAB_API_TOKEN")
            assert problem["title"] == "Cross-site request"
        assert client.get(f"/jobs/{job['id']}").json()["status"] == "queued" and _job_count(client) == 1


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_foreign_page_may_link_to_this_server_but_not_load_from_it(settings, site):
    """A page elsewhere kept 6 <img> loads of figures never drawn before going: 14 of 18 of another
    user's figures answered 503. A person following a link from another site still gets the page."""
    with _client(settings) as client:
        for mode, dest in (
            ("no-cors", "image"),
            ("cors", "empty"),
            ("navigate", "iframe"),
            ("no-cors", "script"),
        ):
            headers = {"sec-fetch-site": site, "sec-fetch-mode": mode, "sec-fetch-dest": dest}
            problem = assert_problem(
                client.get("/jobs", headers=headers), 403, "may link to this server's pages"
            )
            assert problem["title"] == "Cross-site request"
        link = {"sec-fetch-site": site, "sec-fetch-mode": "navigate", "sec-fetch-dest": "document"}
        assert client.get("/", headers=link).status_code == 200
        assert client.get("/jobs", headers=link).status_code == 200
        # the dashboard's own loads, a typed address, and programs (no Sec-Fetch-*) read as ever
        for headers in (
            {"sec-fetch-site": "same-origin", "sec-fetch-mode": "cors"},
            {"sec-fetch-site": "none"},
            {},
        ):
            assert client.get("/jobs", headers=headers).status_code == 200, headers


def test_the_dashboard_behind_a_tls_proxy_may_write(settings):
    """The page is https://name, the proxy passes 'Host: name' on plain http: it was a 403 (its default
    port, 443, against http's 80). A port the page names must still be the Host's."""
    with _client(settings, allowed_hosts="mlplab.example.com") as client:
        for origin, host in (
            ("https://mlplab.example.com", "mlplab.example.com"),
            ("https://mlplab.example.com:8443", "mlplab.example.com:8443"),  # nginx's $http_host
        ):
            posted = client.post("/jobs", json=JOB, headers={"origin": origin, "host": host})
            assert posted.status_code == 202, (origin, host, posted.text)
        for origin, host in (
            ("https://mlplab.example.com:8443", "mlplab.example.com"),  # another port of the name
            ("https://mlplab.example.com:8443", "mlplab.example.com:9443"),
            ("https://evil.example", "mlplab.example.com"),
            ("http://mlplab.example.com:443", "mlplab.example.com"),  # another scheme's default port
            ("https://mlplab.example.com:80", "mlplab.example.com"),
        ):
            assert_problem(client.post("/jobs", json=JOB, headers={"origin": origin, "host": host}), 403)
        assert _job_count(client) == 2


def test_same_origin_and_programs_may_write_and_a_token_lets_a_cross_site_program_through(settings):
    with _client(settings) as client:
        for headers in (
            {"origin": "http://testserver", "sec-fetch-site": "same-origin"},  # the dashboard
            {"origin": "http://TestServer:80"},
            {},  # curl, httpx, the CLI
        ):
            assert client.post("/jobs", json=JOB, headers=headers).status_code == 202, headers
    with _client(settings, api_token=TOKEN, database_url=settings.database_url + "-token") as client:
        evil = {"origin": "http://evil.example"}
        assert client.post("/jobs", json=JOB, headers=evil | BEARER).status_code == 202
        spaced = {"authorization": f"Bearer  {TOKEN} "}  # as a careless shell line sends it
        assert client.post("/jobs", json=JOB, headers=spaced).status_code == 202
        assert_problem(client.post("/jobs", json=JOB, headers=evil), 403, "may not change anything")
        assert_problem(client.post("/jobs", json=JOB, headers=evil | {"authorization": "Bearer no"}), 401)
        assert _job_count(client) == 2
    with _client(settings, api_token=f" {TOKEN}\n", database_url=settings.database_url + "-spaced") as client:
        assert client.post("/jobs", json=JOB, headers=BEARER).status_code == 202  # a token file's newline


# --- DNS rebinding: the Host --------------------------------------------------------------------


@pytest.mark.parametrize("host", ["rebind.evil.example", "localhost.evil.example", "127.0.0.1.nip.io:8000"])
def test_a_host_this_server_does_not_answer_to_is_400(settings, host):
    with _client(settings) as client:
        job = client.post("/jobs", json=JOB).json()
        for path in ("/jobs", f"/jobs/{job['id']}", "/jobs/", "/", "/static/index.html"):
            problem = assert_problem(client.get(path, headers={"host": host}), 400, "MLPLAB_ALLOWED_HOSTS")
            assert problem["title"] == "Host not allowed"
        assert_problem(client.post(f"/jobs/{job['id']}/cancel", headers={"host": host}), 400)
        assert client.get(f"/jobs/{job['id']}").json()["status"] == "queued"


@pytest.mark.parametrize("host", ["localhost:evil", "[localhost]evil.example", "localhost/x", "[x"])
def test_a_host_header_that_is_no_host_is_400_even_with_any_host_allowed(settings, host):
    with _client(settings, allowed_hosts="*") as client:
        problem = assert_problem(client.get("/healthz", headers={"host": host}), 400, "host[:port]")
        assert problem["title"] == "Bad Host"
        assert_problem(client.post("/jobs", json=JOB, headers={"host": host}), 400)
        assert _job_count(client) == 0


def test_the_local_names_the_connections_address_and_the_configured_ones_are_served(settings):
    with _client(settings) as client:  # TestClient's connection arrives on "testserver"
        for host in ("localhost", "LOCALHOST:8000", "127.0.0.1:8000", "[::1]:8000", "[::1]", "testserver"):
            assert client.get("/healthz", headers={"host": host}).status_code == 200, host
    with _client(settings, allowed_hosts="mlplab.example.com, *.lab.example") as client:
        for host in ("mlplab.example.com", "mlplab.example.com.", "a.lab.example:443", "testserver"):
            assert client.get("/healthz", headers={"host": host}).status_code == 200, host
        for host in ("localhost", "lab.example", "example.com"):
            assert_problem(client.get("/healthz", headers={"host": host}), 400)
    with _client(settings, allowed_hosts="*") as client:  # behind a proxy that checks the name itself
        for host in ("anything.example", "[fe80::1%25eth0]:8000", "[v1.fe80::a+en1]", "a_b.example"):
            assert client.get("/healthz", headers={"host": host}).status_code == 200, host
