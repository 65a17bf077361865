"""The dashboard against an API that wants its token (MLPLAB_API_TOKEN), in a real browser: a refused
request shows a form for the token, which the tab keeps (sessionStorage) and sends with every request,
a wrong one is refused again, and "forget token" drops it; with MLPLAB_PROTECT_READS=true, the pages
themselves load once it is given. Services without a worker: their jobs stay queued."""

from __future__ import annotations

import pytest

from tests.e2e.browser import browser, open_new_job_form, rendered, shot, watched_page  # noqa: F401
from tests.e2e.test_dashboard import SMALL, fill_spec
from tests.support import start_service

pytestmark = pytest.mark.slow  # real API processes and Chromium

TOKEN = "dashboard-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
KEPT = "() => [sessionStorage.getItem('mlplab.token'), localStorage.length]"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    svc = start_service(tmp_path_factory.mktemp("guarded"), MLPLAB_API_TOKEN=TOKEN)
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    svc = start_service(
        tmp_path_factory.mktemp("private"), MLPLAB_API_TOKEN=TOKEN, MLPLAB_PROTECT_READS="true"
    )
    with svc.client(headers=AUTH) as client:
        created = client.post("/jobs", json={"backend": "numpy", "hidden_layers": [64], "epochs": 1})
        assert created.status_code == 202, created.text
        svc.job_id = created.json()["id"]
    yield svc
    svc.stop()


def give_token(page, where: str, token: str) -> None:
    form = page.locator(f"{where} .token-form")
    form.locator("input[type=password]").fill(token)
    form.locator("button[type=submit]").click()


def test_a_job_is_submitted_and_cancelled_once_the_token_is_given(browser, guarded):  # noqa: F811
    with watched_page(browser, guarded.url) as w:
        page = w.page
        rendered(page, "/")
        assert not page.is_visible("#forget-token")  # no token held
        open_new_job_form(page)
        fill_spec(page, SMALL | {"epochs": "1"})
        page.click("#submit")
        page.wait_for_selector("#submit-problem .token-form")
        problem = page.inner_text("#submit-problem .problem")
        assert "(401)" in problem and "needs its token (MLPLAB_API_TOKEN)" in problem
        shot(page.locator("#submit-problem"), "30-token-asked")

        # a pasted curly quote could never go in a header (fetch threw on every request): refused here
        give_token(page, "#submit-problem", f"{TOKEN}\u201d")
        page.wait_for_selector("#submit-problem .token-form :text('check what was pasted')")
        assert page.evaluate(KEPT) == [None, 0]

        # a wrong token: the API's 401, and the form again
        give_token(page, "#submit-problem", "not-the-token")
        page.wait_for_selector("#submit-problem .problem:has-text('The bearer token is not valid')")
        assert page.locator("#submit-problem .token-form").count() == 1

        # the right one: the job is submitted with the form as it was filled, and listed
        give_token(page, "#submit-problem", TOKEN)
        link = page.wait_for_selector("#submit-note a")
        job_id = int(link.inner_text().split()[1])
        assert page.locator("#submit-problem .problem").count() == 0
        page.wait_for_selector(f"table.jobs tr[data-job='{job_id}']")
        assert page.inner_text(f"tr[data-job='{job_id}'] [data-status]") == "queued"
        with guarded.client() as client:
            assert client.get(f"/jobs/{job_id}").json()["spec"]["epochs"] == 1
        # kept for the tab only, and sent: the job's own page cancels it
        assert page.evaluate(KEPT) == [TOKEN, 0]
        assert page.is_visible("#forget-token")
        rendered(page, f"/#/jobs/{job_id}")
        page.click("#cancel")
        page.wait_for_selector("#job-actions :text('Cancel requested.')")
        with guarded.client() as client:
            assert client.get(f"/jobs/{job_id}").json()["status"] == "cancelled"

        # forgotten: asked for again, here by the list's Cancel, which the token then lets through
        with guarded.client(headers=AUTH) as client:
            other = client.post("/jobs", json={"backend": "numpy", "epochs": 1}).json()["id"]
        rendered(page, "/")
        page.click("#forget-token")
        rendered(page)
        assert page.evaluate(KEPT) == [None, 0] and not page.is_visible("#forget-token")
        page.click(f"[data-cancel='{other}']")
        # above the list, which redraws every few seconds: the form stays
        page.wait_for_selector("#cancel-problem .token-form")
        give_token(page, "#cancel-problem", TOKEN)
        page.wait_for_selector(f"tr[data-job='{other}'] .status.cancelled")
        assert page.locator("#cancel-problem .problem").count() == 0
        w.assert_clean()


def test_with_protected_reads_the_jobs_page_loads_after_the_token(browser, private):  # noqa: F811
    with watched_page(browser, private.url) as w:
        page = w.page
        page.goto("/")
        page.wait_for_selector("#view .token-form")
        assert "(401)" in page.inner_text("#view .problem")
        assert page.locator("table.jobs").count() == 0
        shot(page, "31-token-asked-for-reads")
        give_token(page, "#view", TOKEN)
        page.wait_for_selector(f"table.jobs tr[data-job='{private.job_id}']")
        rendered(page)
        assert page.inner_text("#jobs-range") == "1–1 of 1"
        # the tab keeps it over a reload; another tab starts without it
        page.reload()
        page.wait_for_selector(f"table.jobs tr[data-job='{private.job_id}']")
        other = page.context.new_page()
        other.goto("/")
        other.wait_for_selector("#view .token-form")
        other.close()
        w.assert_clean()


def test_with_protected_reads_images_live_progress_and_downloads_carry_a_read_ticket(browser, private):  # noqa: F811
    """What the browser fetches by itself cannot send the header: each link carries a read ticket."""
    with watched_page(browser, private.url) as w:
        page = w.page
        page.goto("/#/datasets")
        page.wait_for_selector("#view .token-form")
        give_token(page, "#view", TOKEN)
        page.wait_for_selector("#view img")
        rendered(page)
        broken = "() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length"
        assert page.locator("#view img").count() > 0 and page.evaluate(broken) == 0
        assert "ticket=" in page.locator("#view img").first.get_attribute("src")
        rendered(page, f"/#/jobs/{private.job_id}")
        assert page.inner_text("h1 [data-status]") == "queued"
        private.start_worker()
        # the event stream's end reloads the page: a refused stream closed, and the page stayed queued
        page.wait_for_selector("h1 [data-status]:has-text('succeeded')", timeout=120_000)
        rendered(page, f"/#/models/{private.job_id}")
        for link in ("Download weights (.npz)", "ONNX"):
            href = page.get_by_role("link", name=link).get_attribute("href")
            status = page.evaluate("(u) => fetch(u, { method: 'HEAD' }).then((r) => r.status)", href)
            assert status == 200, (link, href)
        w.assert_clean()


def test_the_docs_ui_authorizes_with_the_token_and_writes(browser, guarded):  # noqa: F811
    """/docs had no "Authorize": every "Try it out" of a write was a 401 the page gave no way round."""
    with guarded.client(headers=AUTH) as client:
        before = client.get("/jobs").json()["count"]
    with watched_page(browser, guarded.url) as w:
        page = w.page
        page.goto("/docs")
        page.wait_for_selector(".opblock")
        page.click("button.authorize")
        page.fill(".modal-ux input[type=text], .modal-ux input[type=password]", TOKEN)
        page.click(".modal-ux button.authorize[type=submit], .modal-ux .auth-btn-wrapper button.authorize")
        page.click(".modal-ux button.btn-done")
        page.click(".opblock-post:has-text('/jobs') >> nth=0")
        post = page.locator(".opblock-post.is-open")
        post.locator("button:has-text('Try it out')").click()
        post.locator("button:has-text('Execute')").click()
        post.locator(".live-responses-table .response-col_status:has-text('202')").wait_for()
        w.assert_clean()
    with guarded.client(headers=AUTH) as client:
        assert client.get("/jobs").json()["count"] == before + 1  # the example job, queued
