"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against a real API and worker.

Screenshots of each step land in artifacts/dashboard/ (kept by CI as test artifacts).
"""

from __future__ import annotations

import shutil

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow  # real API and worker processes: seconds each

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "artifacts" / "dashboard"
SMALL = {
    "hidden_layers": "64",
    "activation": "relu",
    "init": "he",
    "optimizer": "adam",
    "learning_rate": "0.003",
    "epochs": "2",
    "train_limit": "3000",
    "log_every": "5",
}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, service):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=service.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, errors


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def fill_spec(page, values: dict[str, str]) -> None:
    for name, value in values.items():
        locator = page.locator(f"#spec-{name}")
        if locator.evaluate("e => e.tagName") == "SELECT":
            locator.select_option(value)
        else:
            locator.fill(value)


def test_submit_watch_open_model_click_cell_draw_and_compare(page, service):
    page.goto("/")
    page.wait_for_selector("#spec-backend")
    # invalid values are explained before anything is sent
    page.fill("#spec-epochs", "0")
    page.click("#submit")
    assert "epochs: must be ≥ 1" in page.inner_text("[data-field=epochs] .err")
    shot(page, "01-invalid-field")
    fill_spec(page, SMALL)
    page.click("#submit")
    page.wait_for_selector("text=queued.")
    job_id = int(page.inner_text("#submit-note").split()[1])
    row = f"tr[data-job='{job_id}']"
    page.wait_for_selector(f"{row} [role=progressbar]")
    page.wait_for_selector(f"{row} [role=progressbar][aria-valuenow='100']", timeout=120_000)
    page.wait_for_selector(f"{row} .status.succeeded", timeout=30_000)
    shot(page, "02-job-succeeded")

    page.click(f"{row} a:has-text('Open')")
    page.wait_for_selector(".heatmap .cell")
    assert page.locator(".heatmap .cell").count() == 100
    cell = page.locator(".heatmap .cell[data-label='7'][data-predicted='7']")
    count = int(cell.inner_text())
    cell.click()
    page.wait_for_selector("[data-cell-images] img")
    assert page.locator("[data-cell-images] img").count() == min(count, 60)
    assert f"{count} images" in page.inner_text("#cell")
    shot(page, "03-model-heatmap-cell")

    page.locator("#pad").scroll_into_view_if_needed()
    pad = page.locator("#pad").bounding_box()  # viewport coordinates, as the mouse uses
    x = pad["x"] + pad["width"] / 2
    page.mouse.move(x, pad["y"] + 30)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x, pad["y"] + 30 + k * (pad["height"] - 60) / 10)
    page.mouse.up()
    page.click("#predict")
    page.wait_for_selector("#predicted")
    assert page.locator(".prob").count() == 10
    assert page.inner_text("#predicted") == "1"
    shot(page, "04-drawn-one")

    # a second model, then compare the two
    with service.client() as client:
        other = client.post(
            "/jobs",
            json={
                "backend": "torch",
                "hidden_layers": [64],
                "activation": "tanh",
                "optimizer": "adam",
                "learning_rate": 0.003,
                "epochs": 2,
                "train_limit": 3000,
            },
        ).json()
        assert service.wait_job(client, other["id"])["status"] == "succeeded"
    page.goto(f"/#/compare?ids={job_id},{other['id']}")
    page.wait_for_selector("#table tr.diff")
    differing = page.locator("#table tr.diff th").all_inner_texts()
    assert {"backend", "activation"} <= set(differing)
    page.wait_for_function(
        "[...document.querySelectorAll('#matrices img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    assert page.locator("#matrices img").count() == 2
    shot(page, "05-compare")


def test_a_refused_spec_shows_the_problem_and_creates_nothing(page, service):
    with service.client() as client:
        before = client.get("/jobs").json()["count"]
    page.goto("/")
    page.wait_for_selector("#spec-backend")
    fill_spec(page, {"hidden_layers": "4096,4096,4096"})  # valid per field, over the parameter budget
    page.click("#submit")
    page.wait_for_selector(".problem[role=alert]")
    assert "MLPLAB_MAX_PARAMETERS" in page.inner_text(".problem[role=alert]")
    with service.client() as client:
        assert client.get("/jobs").json()["count"] == before


def test_a_sweep_from_the_grid_form_lists_its_jobs(page, service):
    page.goto("/")
    page.wait_for_selector("#spec-backend")
    fill_spec(page, SMALL | {"epochs": "1", "train_limit": "500"})
    page.click("summary:has-text('Sweep a grid')")
    page.fill("#grid", '{"seed": [1, 2, 3]}')
    page.click("#sweep")
    page.wait_for_selector("#sweeps table")
    card = page.locator("#sweeps > div").first
    assert "3 jobs" in card.inner_text()
    assert card.locator("tbody tr").count() == 3
    assert sorted(card.locator("tbody tr td:nth-child(2)").all_inner_texts()) == [
        "seed=1",
        "seed=2",
        "seed=3",
    ]
    shot(page, "06-sweep")


def test_dataset_browser_and_phone_layout(browser, service):
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=service.url)
    page = context.new_page()
    page.goto("/#/datasets")
    page.wait_for_selector("#images img")
    assert page.locator("#images .thumb").count() == 48
    page.click("#next")
    page.wait_for_selector("text=48–95 of 10,000")
    # nothing wider than the screen: the page scrolls vertically only
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "07-phone-datasets.png"), full_page=True)
    page.goto("/")
    page.wait_for_selector("#spec-backend")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "08-phone-jobs.png"), full_page=True)
    context.close()
