"""The dashboard's compare page ranks models as the API does (selection.rank_key, the store's BEST_FIRST),
a set where only some have a validation split included, and words p-values as it does: its modules run
in Chromium, the files served straight from service/web (no server)."""

from __future__ import annotations

from urllib.parse import urlsplit

from service.selection import BY_VALIDATION, p_text, rank_key
from tests.e2e.browser import browser  # noqa: F401 - a fixture
from tests.support import REPO

WEB = REPO / "service" / "web"
ORIGIN = "http://mlplab.test"
RANK = "async (models) => { const r = (await import('/static/js/pages/compare.js')).ranking(models); return [r.by, r.order.map((m) => m.id)]; }"


def _model(id: int, validation: float | None, test: float) -> dict:
    return {"id": id, "validation_accuracy": validation, "test_accuracy": test}


MIXED = [
    _model(1, 0.95, 0.90),
    _model(2, None, 0.99),  # validation_size 0: the best test accuracy, ranked after every validated model
    _model(3, 0.95, 0.92),  # tied on validation with 1: the better test first
    _model(4, None, 0.97),
    _model(5, 0.93, 0.93),
    _model(6, 0.93, 0.93),  # equal to 5 on both: the newer job first
]


def _serve(route) -> None:
    path = urlsplit(route.request.url).path
    if path == "/":
        route.fulfill(body="<!doctype html><title>ranking</title>", content_type="text/html")
    elif (file := WEB / path.removeprefix("/static/")).is_file() and path.startswith("/static/"):
        route.fulfill(path=file, content_type="text/javascript")
    else:
        route.fulfill(status=404)


def test_the_compare_pages_ranking_is_the_apis(browser):  # noqa: F811
    page = browser.new_page()
    try:
        page.route(f"{ORIGIN}/**", _serve)
        page.goto(f"{ORIGIN}/")
        api_order = [
            m["id"]
            for m in sorted(
                MIXED, key=lambda m: rank_key(m["validation_accuracy"], m["test_accuracy"], m["id"])
            )
        ]
        assert api_order == [3, 1, 6, 5, 2, 4]
        assert page.evaluate(RANK, MIXED) == [BY_VALIDATION, api_order]
        unvalidated = [m | {"validation_accuracy": None} for m in MIXED]
        assert page.evaluate(RANK, unvalidated) == ["test_accuracy", [2, 4, 6, 5, 3, 1]]
    finally:
        page.close()


def test_p_values_read_as_the_api_words_them(browser):  # noqa: F811
    """A Welch or McNemar p that underflowed to 0.0 is 'p < 1e-300' on the sweep and jobs pages too."""
    page = browser.new_page()
    try:
        page.route(f"{ORIGIN}/**", _serve)
        page.goto(f"{ORIGIN}/")
        values = [0.0, 0.0342, 0.5, 1.1e-95, 4.7e-18]
        shown = page.evaluate(
            "async (ps) => { const { pText } = await import('/static/js/dom.js'); return ps.map(pText); }",
            values,
        )
        assert shown == [p_text(p) for p in values] and shown[0] == "p < 1e-300"
    finally:
        page.close()


def test_models_of_two_datasets_are_not_ranked_against_each_other(browser):  # noqa: F811
    """An MNIST model at 0.97 and a Fashion-MNIST one at 0.88 are not "the best and 9 points behind"."""
    page = browser.new_page()
    try:
        page.route(f"{ORIGIN}/**", _serve)
        page.goto(f"{ORIGIN}/")
        crowned = "async (models) => { const r = (await import('/static/js/pages/compare.js')).ranking(models); return [r.crown?.id ?? null, r.mixed]; }"
        mnist, fashion = _model(1, 0.97, 0.96), _model(2, 0.88, 0.87)
        both = [mnist | {"spec": {"dataset": "mnist"}}, fashion | {"spec": {"dataset": "fashion-mnist"}}]
        assert page.evaluate(crowned, both) == [None, ["mnist", "fashion-mnist"]]
        one = [m | {"spec": {"dataset": "mnist"}} for m in (mnist, fashion)]
        assert page.evaluate(crowned, one) == [1, []]
    finally:
        page.close()
