"""The dashboard against hostile input (issue 11, section 4): values from the URL and from the API
are shown as text and never run, whatever the Content-Security-Policy does; the policy and the other
security headers are on every response; Swagger UI and the event stream still work under them.

A service without a worker: its jobs stay queued, and the one failed job is failed by this test."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import httpx
import pytest

from service.api.security import SECURITY_HEADERS
from service.store.db import make_engine, make_sessionmaker, session_scope
from service.store.jobs import claim_job, fail_job
from tests.e2e.browser import browser, open_new_job_form, rendered, shot, watched_page  # noqa: F401
from tests.support import start_service

pytestmark = pytest.mark.slow  # a real API process and Chromium

PAYLOADS = [
    "<img src=x onerror=window.__pwned=1>",
    '"><script>window.__pwned=1</script>',
    "javascript:window.__pwned=1",
    "'><svg onload=window.__pwned=1>",
]
SMALL = {"backend": "numpy", "hidden_layers": [64], "epochs": 1, "train_limit": 500}


@pytest.fixture(scope="module")
def idle(tmp_path_factory, module_db_url):
    svc = start_service(tmp_path_factory.mktemp("idle"), module_db_url)
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def failed_job(idle) -> int:
    """A job that failed with a script in its error text, as the worker would record it."""
    with idle.client() as client:
        job_id = client.post("/jobs", json=SMALL).json()["id"]
    engine = make_engine(idle.env["MLPLAB_DATABASE_URL"])
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            claimed = claim_job(session, "tests:1")
            assert claimed is not None and claimed.id == job_id
            fail_job(session, job_id, "tests:1", error=f"diverged {PAYLOADS[0]} {PAYLOADS[1]}")
    finally:
        engine.dispose()
    return job_id


def crafted_urls(job_id: int) -> list[str]:
    urls = []
    for payload in PAYLOADS:
        p = quote(payload, safe="")
        urls += [
            f"/#/datasets?split={p}",
            f"/#/datasets?name={p}",
            f"/#/datasets?offset={p}&model={p}",
            f"/#/?status={p}",
            f"/#/?sweep={p}&sort={p}&offset={p}",
            f"/#/compare?ids={job_id},{p}",
            f"/#/models/{p}",
            f"/#/jobs/{p}",
            f"/#/{p}",
        ]
    return urls + ["/#/datasets?split=<img src=x onerror=window.__pwned=1>", f"/#/jobs/{job_id}", "/#/"]


@pytest.mark.parametrize("csp", ["enforced", "bypassed"])
def test_crafted_urls_and_api_values_are_shown_as_text_and_never_run(browser, idle, failed_job, csp):  # noqa: F811
    # Bypassing the policy shows the page is safe by itself; enforced, the page must not trip it at all.
    with watched_page(browser, idle.url, bypass_csp=csp == "bypassed") as w:
        for url in crafted_urls(failed_job):
            rendered(w.page, url)
            assert not w.pwned(), url
            assert w.page.locator("img[src=x], script:not([src]), svg[onload], [onerror]").count() == 0, url
            assert w.page.locator("a[href^='javascript' i]").count() == 0, url
            w.assert_clean()


def test_the_api_echo_of_a_payload_is_text_on_the_page(browser, idle, failed_job):  # noqa: F811
    with watched_page(browser, idle.url) as w:
        page = w.page
        # a problem detail echoing the URL's dataset name
        rendered(page, f"/#/datasets?name={quote(PAYLOADS[0], safe='')}")
        assert PAYLOADS[0] in page.inner_text("#ds-problem .problem")
        # a sweep id from the URL: the filter shows it, the API's 422 names it
        rendered(page, f"/#/?sweep={quote(PAYLOADS[1], safe='')}")
        assert PAYLOADS[1][:12] in page.inner_text("#filter-sweep")
        assert "sweep_id" in page.inner_text("#jobs-problem .problem")
        # the failed job's error, in the list and on its page
        rendered(page, "/#/")
        assert PAYLOADS[0] in page.inner_text(f"tr[data-job='{failed_job}'] .problem")
        rendered(page, f"/#/jobs/{failed_job}")
        assert PAYLOADS[1] in page.inner_text("#job-error")
        shot(page, "20-failed-job-error-as-text")
        # a sweep grid whose value is a script: the API refuses it and says what it got
        rendered(page, "/#/")
        open_new_job_form(page)
        page.click("summary:has-text('Sweep a grid')")
        page.fill("#grid", '{"activation": ["' + PAYLOADS[0] + '"]}')
        page.click("#sweep")
        page.wait_for_selector("#sweep-problem .problem")
        assert PAYLOADS[0] in page.inner_text("#sweep-problem .problem")
        assert not w.pwned()
        w.assert_clean()


def test_every_response_carries_the_security_headers(idle):
    policy = SECURITY_HEADERS["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy
    with idle.client() as client:
        job_id = client.post("/jobs", json=SMALL).json()["id"]
        responses = [
            client.get(path)
            for path in (
                "/",
                "/docs",
                "/openapi.json",
                "/static/app.css",
                "/static/js/main.js",
                "/static/docs.js",
                "/static/vendor/plotly.min.js",
                "/static/swagger/swagger-ui-bundle.js",
                "/jobs",
                f"/jobs/{job_id}",
                "/jobs/999999",  # a problem
                "/no/such/route",
                "/healthz",
            )
        ]
        responses.append(client.post("/jobs", json={"backend": "numpy", "epochs": 0}))  # a 422
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.request.url, name)
        assert response.headers["referrer-policy"] in ("no-referrer", "same-origin")
        assert response.headers["x-content-type-options"] == "nosniff"


def test_plotly_js_comes_from_the_package_with_cache_headers(idle):
    with idle.client() as client:
        response = client.get("/static/vendor/plotly.min.js")
        assert response.status_code == 200 and "javascript" in response.headers["content-type"]
        assert response.headers["cache-control"] == "public, max-age=86400"
        assert re.search(r"plotly\.js v\d+\.\d+\.\d+", response.text[:500])
        again = client.get(
            "/static/vendor/plotly.min.js", headers={"if-none-match": response.headers["etag"]}
        )
        assert again.status_code == 304 and again.content == b""
        # only that file of the package's data is served
        assert client.get("/static/vendor/widgetbundle.js").status_code == 404
        for module in ("/static/js/main.js", "/static/js/pages/model.js"):
            assert "javascript" in client.get(module).headers["content-type"]


def test_the_event_stream_still_streams_through_the_header_middleware(idle):
    with idle.client() as client:
        job_id = client.post("/jobs", json=SMALL).json()["id"]  # stays queued: the stream never ends
        timeout = httpx.Timeout(10.0, read=5.0)
        with client.stream("GET", f"/jobs/{job_id}/events", timeout=timeout) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-content-type-options"] == "nosniff"
            lines = response.iter_lines()
            first = next(line for line in lines if line.startswith("event:"))
            assert first == "event: status"
        client.post(f"/jobs/{job_id}/cancel")


def test_swagger_ui_works_under_the_policy(browser, idle):  # noqa: F811
    with watched_page(browser, idle.url) as w:
        page = w.page
        page.goto("/docs")
        page.wait_for_selector(".opblock")
        assert page.locator(".opblock").count() > 20
        page.click("#operations-health-healthz_healthz_get, .opblock-get:has-text('/healthz')")
        page.click("button:has-text('Try it out')")
        page.click("button:has-text('Execute')")
        page.wait_for_selector(".live-responses-table .response-col_status:has-text('200')")
        shot(page, "21-docs-under-csp")
        w.assert_clean()


@contextmanager
def another_site() -> Iterator[str]:
    """An empty page served on http://localhost:<port>: another site than the API's http://127.0.0.1."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(b"<!doctype html><title>elsewhere</title>")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://localhost:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


CROSS_SITE_WRITES = """async ([api, id]) => {
  await fetch(`${api}/jobs/${id}/cancel`, {method: "POST", mode: "no-cors"});
  await fetch(`${api}/jobs`, {method: "POST", mode: "no-cors", headers: {"content-type": "text/plain"},
                              body: '{"backend": "numpy"}'});
}"""


def test_a_page_on_another_site_can_neither_cancel_nor_submit(browser, idle):  # noqa: F811
    """A body-less POST needs no preflight: before the guard, this page cancelled the job."""
    with idle.client() as client:
        job_id = client.post("/jobs", json=SMALL).json()["id"]
        count = client.get("/jobs").json()["count"]
    with another_site() as url, watched_page(browser, url) as w:
        answers: list[tuple[str, int]] = []
        w.page.on(
            "response", lambda r: answers.append((r.url, r.status)) if r.url.startswith(idle.url) else None
        )
        w.page.goto(url)
        w.page.evaluate(CROSS_SITE_WRITES, [idle.url, job_id])
    assert answers == [(f"{idle.url}/jobs/{job_id}/cancel", 403), (f"{idle.url}/jobs", 403)]
    with idle.client() as client:
        assert client.get(f"/jobs/{job_id}").json()["status"] == "queued"
        assert client.get("/jobs").json()["count"] == count
        client.post(f"/jobs/{job_id}/cancel")


FOREIGN_LOADS = """async (api) => {
  const image = await new Promise((done) => {
    const img = new Image();
    img.onload = () => done("loaded");
    img.onerror = () => done("refused");
    img.src = `${api}/datasets/mnist/test/0.png`;  // a PNG served to this server's own pages
  });
  await fetch(`${api}/jobs`, {mode: "no-cors"});
  return image;
}"""


def test_a_page_on_another_site_may_link_here_but_not_load_from_here(browser, idle):  # noqa: F811
    """A foreign page kept six <img> loads of figures never drawn before going: 14 of 18 of another
    user's figures answered 503 'Figure queue full'. Chromium's Fetch Metadata now marks them refused."""
    with another_site() as url, watched_page(browser, url) as w:
        answers: list[tuple[str, int]] = []
        w.page.on(
            "response", lambda r: answers.append((r.url, r.status)) if r.url.startswith(idle.url) else None
        )
        w.page.goto(url)
        assert w.page.evaluate(FOREIGN_LOADS, idle.url) == "refused"
        assert answers == [(f"{idle.url}/jobs", 403)]  # (Chromium reports no response of a refused image)
        w.page.set_content(f'<a id="go" href="{idle.url}/">the dashboard</a>')
        with w.page.expect_navigation():
            w.page.click("#go")
        assert w.page.url == f"{idle.url}/" and (f"{idle.url}/", 200) in answers
