"""A model's short label (spec.js shortPart), run in Chromium from the files in service/web: a study's
sampled learning rate read 'lr 0.007130874626643603' on the jobs page and the compare picker, where the
command line and the study page say 0.00713087."""

from __future__ import annotations

from service.cli.client import cell
from tests.e2e.browser import browser  # noqa: F401 - a fixture
from tests.e2e.test_compare_ranking import ORIGIN, _serve

SHORT = """async ([name, value]) => {
  const { shortPart } = await import('/static/js/spec.js');
  return shortPart(name, value, { properties: { [name]: { type: ['number', 'integer'].includes(typeof value) ? 'number' : 'string' } } });
}"""


def test_a_sampled_rate_is_shown_to_six_figures_as_the_command_line_shows_it(browser):  # noqa: F811
    page = browser.new_page()
    try:
        page.route(f"{ORIGIN}/**", _serve)
        page.goto(f"{ORIGIN}/")
        rate = 0.007130874626643603
        assert page.evaluate(SHORT, ["learning_rate", rate]) == f"lr {cell(rate)}" == "lr 0.00713087"
        assert page.evaluate(SHORT, ["seed", 12345678]) == "seed 12345678"  # whole numbers whole
        assert page.evaluate(SHORT, ["l2", 0.0001]) == "l2 0.0001"
    finally:
        page.close()
