"""The dashboard's log axes (charts.js), run in Chromium from the files in service/web (no server): a
study's slice chart over 300 decades had a label at each, and a sweep's learning-rate chart labelled
plotly's minor ticks with bare digits ("2 3 4 ... 9 0.1 2 3")."""

from __future__ import annotations

import math

import pytest

from tests.e2e.browser import browser  # noqa: F401 - a fixture
from tests.e2e.test_compare_ranking import ORIGIN, _serve

AXIS = "async ([kind, values]) => (await import('/static/js/charts.js'))[kind](values, 'x')"


@pytest.fixture
def page(browser):  # noqa: F811
    page = browser.new_page()
    page.route(f"{ORIGIN}/**", _serve)
    page.goto(f"{ORIGIN}/")
    yield page
    page.close()


def test_a_log_axis_over_hundreds_of_decades_keeps_a_dozen_labels_and_both_ends(page):
    axis = page.evaluate(AXIS, ["decadeAxis", [1e-300, 10]])
    ticks = axis["tickvals"]
    assert len(ticks) <= 12 and ticks[0] <= 1e-300 and ticks[-1] >= 10, ticks
    assert axis["range"][0] < -300 and axis["range"][1] > 1


def test_thinned_labels_are_evenly_spaced_to_the_end(page):
    """1e-110 to 10 kept ..., 1e-11, 1, 10: the last two labels a decade apart, the others eleven."""
    ticks = page.evaluate(AXIS, ["decadeAxis", [1e-110, 10]])["tickvals"]
    gaps = [round(math.log10(b / a)) for a, b in zip(ticks, ticks[1:], strict=False)]
    assert len(ticks) <= 12 and ticks[-1] >= 10 and min(gaps) >= max(gaps) / 2, ticks


def test_a_bound_past_a_doubles_range_draws_a_finite_axis(page):
    """A study's l2 from 5e-324 (accepted) gave a tick of 0 and a range of -Infinity to Infinity."""
    axis = page.evaluate(AXIS, ["decadeAxis", [5e-324, 0.001]])
    assert all(0 < t < math.inf for t in axis["tickvals"]) and len(axis["tickvals"]) <= 12, axis
    assert all(math.isfinite(r) for r in axis["range"]), axis


@pytest.mark.parametrize(
    ("kind", "values", "ticks"),
    [
        ("decadeAxis", [0.01, 0.05, 0.1, 0.3], [0.01, 0.1, 1]),  # a sweep's learning rates: decades
        ("lossAxis", [0.05, 2.3], [0.05, 0.1, 0.2, 0.5, 1, 2, 5]),  # a loss: 1, 2 and 5 of each
    ],
)
def test_a_log_axis_is_labelled_at_whole_values(page, kind, values, ticks):
    assert page.evaluate(AXIS, [kind, values])["tickvals"] == ticks
