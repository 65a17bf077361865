"""The dashboard's layout holds with what it is given: a confusion matrix with 4-digit counts fits a
phone's card, a long unbroken error or alias wraps instead of widening the page, a pager past the end
leads back, a problem naming one field says it once, a study's pace is worded in the singular, and the
parallel coordinates' titles neither collide nor hide under plotly's mode bar on a phone."""

from __future__ import annotations

import pytest

from service.store.db import make_engine, make_sessionmaker, session_scope
from service.store.jobs import claim_job, fail_job
from tests.e2e.browser import DESKTOP, PHONE, browser, rendered, scroll_width, watched_page  # noqa: F401
from tests.e2e.test_dashboard import SMALL_JSON, SMALL_STUDY, idle  # noqa: F401 - idle is a fixture

pytestmark = pytest.mark.slow  # real API and worker processes, and Chromium

GRID = {"init": ["he", "glorot"], "learning_rate": [0.1, 0.3], "seed": [0, 1]}
LONG_WORD = "x" * 300
LONG_ALIAS = "a" + "w" * 62  # the longest alias the API takes, and no dash to break it at

# The right edge of the confusion matrix's last column (its tracks overflow the grid's own box) against its
# card's, and its cells whose count overflows them.
MATRIX_FITS = """() => { const grid = document.querySelector('#cm .heatmap'), card = document.querySelector('#confusion');
  const cells = [...grid.querySelectorAll('.cell')];
  return {grid: Math.max(...[...grid.children].map(c => c.getBoundingClientRect().right)), card: card.getBoundingClientRect().right,
          overflowing: cells.filter(c => c.scrollWidth > c.clientWidth).map(c => c.textContent), cells: cells.length}; }"""
# The same, once every count is four of the widest digits.
WIDEST_COUNTS = (
    "() => document.querySelectorAll('#cm .heatmap .cell').forEach(c => { c.textContent = '8888'; })"
)
# The parallel coordinates' axis titles and plotly's mode bar, as boxes relative to the chart.
PARCOORDS_TITLES = """el => { const box = el.getBoundingClientRect();
  const rel = (r) => ({left: r.left - box.left, right: r.right - box.left, top: r.top - box.top, bottom: r.bottom - box.top});
  return {width: box.width, modebar: rel(el.querySelector('.modebar').getBoundingClientRect()),
          titles: [...el.querySelectorAll('.dimlabel')].filter(t => t.textContent).map(t => ({text: t.textContent, ...rel(t.getBoundingClientRect())}))}; }"""


def apart(a: dict, b: dict) -> bool:
    return (
        a["right"] <= b["left"]
        or b["right"] <= a["left"]
        or a["bottom"] <= b["top"]
        or b["bottom"] <= a["top"]
    )


@pytest.fixture(scope="module")
def swept(service):
    """A sweep of eight small models (init x learning rate x seed), trained: its id and its jobs' ids."""
    with service.client() as client:
        created = client.post("/sweeps", json={"base": SMALL_JSON | {"validation_size": 500}, "grid": GRID})
        assert created.status_code == 202, created.text
        sweep = created.json()
        ids = [j["id"] for j in sweep["jobs"]]
        for job_id in ids:
            assert service.wait_job(client, job_id)["status"] == "succeeded"
    return sweep["id"], ids


def failed_with(svc, error: str) -> int:
    """The oldest queued job of a service without a worker, failed through the store with `error`."""
    engine = make_engine(svc.env["MLPLAB_DATABASE_URL"])
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            job = claim_job(session, "tests:1")
            assert job is not None
            fail_job(session, job.id, "tests:1", error=error)
            return job.id
    finally:
        engine.dispose()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_confusion_matrix_fits_its_card_with_four_digit_counts(browser, service, swept, viewport):  # noqa: F811
    with watched_page(browser, service.url, viewport=viewport) as w:
        rendered(w.page, f"/#/models/{swept[1][0]}")
        w.page.wait_for_selector("#cm .heatmap .cell")
        fits = w.page.evaluate(MATRIX_FITS)
        assert fits["cells"] == 100 and fits["grid"] <= fits["card"], fits
        assert fits["overflowing"] == [], fits
        w.page.evaluate(WIDEST_COUNTS)
        assert w.page.evaluate(MATRIX_FITS)["overflowing"] == []
        assert scroll_width(w.page) <= viewport["width"]
        w.assert_clean()


def test_a_long_alias_wraps_in_the_models_title_on_a_phone(browser, service, swept):  # noqa: F811
    model_id = swept[1][1]
    with service.client() as client:
        response = client.put(f"/aliases/{LONG_ALIAS}", json={"model_id": model_id})
        assert response.status_code in (200, 201), response.text
    with watched_page(browser, service.url, viewport=PHONE) as w:
        rendered(w.page, f"/#/models/{model_id}")
        assert w.page.inner_text(f"h1 [data-alias='{LONG_ALIAS}']") == LONG_ALIAS
        assert scroll_width(w.page) <= PHONE["width"]
        w.assert_clean()


def test_parallel_coordinates_titles_stay_apart_and_clear_of_the_mode_bar_on_a_phone(browser, service, swept):  # noqa: F811
    with watched_page(browser, service.url, viewport=PHONE) as w:
        rendered(w.page, f"/#/sweeps/{swept[0]}")
        w.page.wait_for_selector("#sweep-parcoords .modebar")
        drawn = w.page.locator("#sweep-parcoords").evaluate(PARCOORDS_TITLES)
        titles = drawn["titles"]
        assert [t["text"] for t in titles] == ["init", "learning_rate", "validation accuracy"]  # no seed axis
        for i, title in enumerate(titles):
            assert title["left"] >= 0 and title["right"] <= drawn["width"], title
            assert apart(title, drawn["modebar"]), (title, drawn["modebar"])
            assert all(apart(title, other) for other in titles[i + 1 :]), titles
        w.assert_clean()


def test_a_long_unbroken_error_wraps_in_the_jobs_table(browser, idle):  # noqa: F811
    job_id = failed_with(idle, f"diverged: {LONG_WORD}")
    for viewport in (DESKTOP, PHONE):
        with watched_page(browser, idle.url, viewport=viewport) as w:
            rendered(w.page, "/#/?status=failed")
            w.page.wait_for_selector(f"tr[data-job='{job_id}'] .problem")
            assert LONG_WORD in w.page.inner_text(f"tr[data-job='{job_id}'] .problem")
            widths = w.page.evaluate(
                "() => [document.querySelector('#jobs').scrollWidth, document.querySelector('#jobs').clientWidth]"
            )
            assert widths[0] <= widths[1], widths  # the table fits its card: nothing to scroll
            assert scroll_width(w.page) <= viewport["width"]
            w.assert_clean()


def test_the_pager_past_the_end_leads_back_whatever_the_offsets_length(browser, idle):  # noqa: F811
    with idle.client() as client:
        count = client.get("/jobs", params={"limit": 1}).json()["count"]
    last_page = (count - 1) // 50 * 50
    assert last_page > 0  # the idle service holds more than a page of jobs
    with watched_page(browser, idle.url) as w:
        page = w.page
        for offset in ("99999999999999999999", "100000"):
            rendered(page, f"/#/?offset={offset}")
            assert page.is_visible("#jobs-past-end")
            assert page.get_attribute("#jobs-next", "aria-disabled") == "true"
            assert page.get_attribute("#jobs-next", "href") is None
            assert page.get_attribute("#jobs-prev", "aria-disabled") is None
            assert page.get_attribute("#jobs-prev", "href") == f"#/?offset={last_page}"
        w.assert_clean()


def test_a_problem_naming_one_field_says_it_once(browser, idle):  # noqa: F811
    with watched_page(browser, idle.url) as w:
        rendered(w.page, "/#/?offset=abc")  # the API refuses it: query.offset is not a whole number
        problem = w.page.inner_text("#jobs-problem .problem")
        assert "query.offset" in problem and problem.count("whole number written in digits") == 1, problem
        w.assert_clean()


def test_a_study_of_one_trial_at_once_says_so(browser, idle):  # noqa: F811
    with idle.client() as client:
        created = client.post("/studies", json=SMALL_STUDY)
        assert created.status_code == 202, created.text
        study = created.json()
    assert study["config"]["parallelism"] == 1
    with watched_page(browser, idle.url) as w:
        rendered(w.page, f"/#/studies/{study['id']}")
        assert w.page.inner_text("#study-progress p.muted") == "0 epochs trained, 1 trial at once"
        w.assert_clean()
