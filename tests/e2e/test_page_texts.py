"""Texts the dashboard's modules write, run in Chromium from the files in service/web (no server): a
model's short label (a study's sampled learning rate read 'lr 0.007130874626643603' on the jobs page and
the compare picker, where the command line and the study page say 0.00713087), a sweep's intervals."""

from __future__ import annotations

from service.cli.client import cell
from tests.e2e.browser import browser  # noqa: F401 - a fixture
from tests.e2e.test_chart_axes import page  # noqa: F401 - a fixture: a page of service/web's modules

SHORT = """async ([name, value]) => {
  const { shortPart } = await import('/static/js/spec.js');
  return shortPart(name, value, { properties: { [name]: { type: ['number', 'integer'].includes(typeof value) ? 'number' : 'string' } } });
}"""


def test_a_sampled_rate_is_shown_to_six_figures_as_the_command_line_shows_it(page):  # noqa: F811
    rate = 0.007130874626643603
    assert page.evaluate(SHORT, ["learning_rate", rate]) == f"lr {cell(rate)}" == "lr 0.00713087"
    assert page.evaluate(SHORT, ["seed", 12345678]) == "seed 12345678"  # whole numbers whole
    assert page.evaluate(SHORT, ["l2", 0.0001]) == "l2 0.0001"


INTERVALS = """async (summaries) => {
  const { ci, cutNote } = await import('/static/js/pages/sweep.js');
  const configurations = summaries.map((s) => ({ validation_accuracy: s, test_accuracy: null }));
  return [summaries.map(ci), cutNote({ configurations })];
}"""


def test_an_interval_cut_at_100_percent_is_marked_and_said_so(page):  # noqa: F811
    """Two seeds' interval (66.77-105.91) was shown as (66.77 %-100.00 %), read as a computed bound."""
    wide = {"mean": 0.8634, "ci_low": 0.6677, "ci_high": 1.0, "clipped": True}  # as the API sends it
    narrow = {"mean": 0.9, "ci_low": 0.89, "ci_high": 0.91, "clipped": False}
    shown, note = page.evaluate(INTERVALS, [wide, narrow])
    assert shown[0].endswith("–100.00\u00a0%)*") and not shown[1].endswith("*"), shown
    assert note.startswith("* an interval cut at 0 or 100 %"), note
    assert page.evaluate(INTERVALS, [narrow])[1] is None


GAPS = """async (configurations) => {
  const { gapText, cutNote, ci } = await import('/static/js/pages/sweep.js');
  return [configurations.map(gapText), cutNote({ configurations }), configurations.map((c) => ci(c.validation_accuracy))];
}"""


def test_a_gap_past_100_points_is_cut_and_marked_and_agreeing_runs_are_no_certainty(page):  # noqa: F811
    """A newcomer's sweep: "-77.00 (-103.17 to -50.83)" points, more than two accuracies can differ; two
    runs at 11.24 % read "11.24 % (11.24 %-11.24 %)", an interval of no width, as certain as can be. The
    command line says it alike (tests/test_selection.py)."""
    alike = {"mean": 0.1124, "std": 0, "ci_low": 0.1124, "ci_high": 0.1124, "clipped": False}
    past = {
        "gap_to_best": {"difference": -0.77, "ci_low": -1.0317, "ci_high": -0.5083},
        "validation_accuracy": alike,
    }
    within = {
        "gap_to_best": {"difference": -0.02, "ci_low": -0.03, "ci_high": -0.01},
        "validation_accuracy": None,
    }
    gaps, note, shown = page.evaluate(GAPS, [past, within])
    assert gaps == ["−77.00 (−100.00 to −50.83)*", "−2.00 (−3.00 to −1.00)"], gaps
    assert note.startswith("* an interval cut at 0 or 100 % (a gap's at ±100 points)"), note
    assert shown[0] == "11.24\u00a0% (every run alike)", shown
    assert page.evaluate(GAPS, [within])[1] is None


VERSUS = """async (configurations) => {
  const { versusBest, verdict } = await import('/static/js/pages/sweep.js');
  const sweep = { configurations };
  return configurations.map((c) => [versusBest(c), verdict(c, sweep)]);
}"""


def test_a_configuration_is_said_ahead_behind_or_undecided_as_its_gap_says(page):  # noqa: F811
    """One ranked after the best for a failed seed but 4.8 points above it was called 'behind'; equal
    results read 'which is no tie: their results are equal'."""
    gap = lambda d, low, high: {"difference": d, "ci_low": low, "ci_high": high}  # noqa: E731
    ahead = {"versus_best": "ahead", "p_value": 0.027, "gap_to_best": gap(0.048, 0.0226, 0.0734)}
    behind = {"versus_best": "behind", "p_value": 0.01, "gap_to_best": gap(-0.02, -0.03, -0.01)}
    unclear = {"versus_best": "can't tell", "p_value": 0.0686, "gap_to_best": gap(-0.318, -1.302, 0.665)}
    equal = {"versus_best": "can't tell", "p_value": 1, "gap_to_best": gap(0, 0, 0)}
    shown = page.evaluate(VERSUS, [ahead, behind, unclear, equal])
    assert [word for word, _ in shown] == [
        "ahead (p = 0.027)",
        "behind (p = 0.01)",
        "can't tell (p = 0.0686)",
        "can't tell (p = 1)",
    ]
    assert shown[2][1] == (
        "the seeds do not tell them apart (p = 0.0686), which is no tie: it lies anywhere from 130.20 "
        "points behind the best to 66.50 ahead (95 % CI; more seeds narrow it)"
    )
    assert shown[3][1] == "their results are equal on every seed (p = 1)"
