"""Which configuration is best (service/selection.py): what the survivors of a configuration whose runs
failed may claim, and what a test without spread may claim."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from service.selection import CUT_MARK, PAIRED, WELCH, Run, Summary, gap_cut, gap_text, group_runs, welch


def _runs(first_id: int, lr: float, outcomes: list[float | str]) -> list[Run]:
    """One run per seed: an accuracy (succeeded), "failed" or "cancelled"."""
    return [
        Run(
            job_id=first_id + seed,
            hyperparameters={"learning_rate": lr},
            seed=seed,
            succeeded=not isinstance(outcome, str),
            validation_accuracy=None if isinstance(outcome, str) else outcome,
            test_accuracy=None if isinstance(outcome, str) else outcome - 0.01,
            failed=outcome == "failed",
        )
        for seed, outcome in enumerate(outcomes)
    ]


def test_a_configuration_that_failed_on_some_seeds_ranks_after_those_that_did_not():
    """Diverging on 2 seeds of 3 and reaching 0.95 on the third ranked best ahead of three steady 0.94s."""
    flaky = _runs(1, 0.3, ["failed", "failed", 0.95])
    steady = _runs(4, 0.01, [0.94, 0.941, 0.939])
    configurations, _ = group_runs(flaky + steady)
    assert [c.hyperparameters["learning_rate"] for c in configurations] == [0.01, 0.3]
    assert [(c.n, c.failed) for c in configurations] == [(3, 0), (1, 2)]
    assert configurations[0].tied_with_best is True


def test_cancelled_runs_are_not_failures():
    """A cancel is the user's doing, not the configuration's: it neither counts against it nor in its mean."""
    configurations, _ = group_runs(_runs(1, 0.3, ["cancelled", 0.95]) + _runs(3, 0.01, [0.94, 0.94]))
    assert [(c.hyperparameters["learning_rate"], c.n, c.failed) for c in configurations] == [
        (0.01, 2, 0),  # one run against two: see below
        (0.3, 1, 0),
    ]
    two, _ = group_runs(_runs(1, 0.3, ["cancelled", 0.95, 0.95]) + _runs(4, 0.01, [0.94, 0.94, 0.94]))
    assert [(c.hyperparameters["learning_rate"], c.n) for c in two] == [(0.3, 2), (0.01, 3)]


def test_one_run_of_a_cancelled_sweep_does_not_outrank_the_mean_of_eight():
    """Cancelled after one seed of lr 0.03, it ranked best on that seed's 0.0986 over eight seeds of lr 0.02
    at 0.0978, and promote picked it."""
    lucky = _runs(1, 0.03, [0.0986] + ["cancelled"] * 7)
    eight = _runs(9, 0.02, [0.0978, 0.095, 0.1, 0.097, 0.099, 0.096, 0.0975, 0.098])
    (first, second), _ = group_runs(lucky + eight)
    assert (first.hyperparameters["learning_rate"], first.n) == (0.02, 8)
    assert (second.hyperparameters["learning_rate"], second.n, second.failed) == (0.03, 1, 0)
    # nor of seven, one of eight having diverged: a single run ranks after several whatever they lost
    seven = _runs(9, 0.02, [0.0978, 0.095, 0.1, 0.097, 0.099, 0.096, 0.0975, "failed"])
    (first, second), _ = group_runs(lucky + seven)
    assert (first.n, first.failed, second.n) == (7, 1, 1)


def test_runs_without_spread_are_not_called_different_with_certainty():
    """Two seeds each at 0.9000 and at 0.8998 (one image apart): Welch's t is infinite, p would be 0."""
    assert welch([0.9, 0.9], [0.8998, 0.8998]) is None
    assert welch([0.9, 0.9], [0.9, 0.9]).p_value == 1.0  # type: ignore[union-attr]
    configurations, _ = group_runs(_runs(1, 0.1, [0.9, 0.9]) + _runs(3, 0.2, [0.8998, 0.8998]))
    assert [(c.p_value, c.tied_with_best) for c in configurations] == [(None, True), (None, None)]


def test_three_equal_runs_have_no_spread_however_their_value_rounds():
    """0.099 three times: np.var says 1.9e-34, not 0, and Welch said p = 3e-30, "a real difference"."""
    assert welch([0.105] * 3, [0.099] * 3) is None
    configurations, _ = group_runs(_runs(1, 0.1, [0.105] * 3) + _runs(4, 0.2, [0.099] * 3))
    runner_up = configurations[1]
    assert (runner_up.p_value, runner_up.tied_with_best) == (None, None)
    assert runner_up.validation == Summary(3, 0.099, 0.0, 0.099, 0.099)  # the value, a point interval


def test_a_configuration_without_a_result_ranks_after_one_with_results_and_a_failure():
    """Queued or cancelled all through, it has nothing to rank by: it comes last, not first."""
    pending = _runs(1, 0.5, ["cancelled", "cancelled"])
    mixed = _runs(3, 0.1, [0.97, 0.97, "failed"])
    configurations, _ = group_runs(pending + mixed)
    assert [(c.hyperparameters["learning_rate"], c.n) for c in configurations] == [(0.1, 2), (0.5, 0)]
    assert configurations[0].tied_with_best is True


def test_an_interval_of_accuracies_stays_within_zero_and_one():
    """Two seeds at 0.02 and 0.22: Student's interval ran from -0.19 (an accuracy no model can have)."""
    (spread,) = group_runs(_runs(1, 0.5, [0.02, 0.22]))[0]
    assert spread.validation is not None
    assert spread.validation.ci_low == 0.0 and 0.12 < spread.validation.ci_high <= 1.0
    (high,) = group_runs(_runs(1, 0.01, [0.999, 0.97]))[0]
    assert high.validation is not None and high.validation.ci_high == 1.0
    # and says so: the API sent (0.0, 1.0) as if computed, and no display could mark it
    assert spread.validation.clipped and high.validation.clipped
    (narrow,) = group_runs(_runs(1, 0.1, [0.97, 0.971, 0.972]))[0]
    assert narrow.validation is not None and not narrow.validation.clipped


def test_the_gap_to_the_best_comes_with_the_interval_of_the_test_that_weighed_it():
    """Two seeds, 80.7 % against 48.9 %: p = 0.07 was shown as 'tied' with a 31.8-point gap; the gap's
    interval (as scipy's tests give it) says how far apart two seeds leave them."""
    from scipy import stats

    best, other = [0.78, 0.835], [0.539, 0.439]
    configurations, _ = group_runs(_runs(1, 0.05, list(best)) + _runs(5, 0.01, list(other)))
    gap = configurations[1].gap
    expected = stats.ttest_rel(other, best).confidence_interval(0.95)
    assert gap is not None and configurations[1].tested_by == PAIRED
    assert gap.difference == pytest.approx(sum(other) / 2 - sum(best) / 2)
    assert (gap.ci_low, gap.ci_high) == pytest.approx((expected.low, expected.high), rel=1e-9)
    assert gap.ci_low < -1 and gap.ci_high > 0  # two seeds cannot place it: not a tie
    assert configurations[0].gap is None  # the best has no gap to itself
    apart = [Run(**{**vars(r), "seed": r.seed + 4}) for r in _runs(5, 0.01, list(other))]
    configurations, _ = group_runs(_runs(1, 0.05, list(best)) + apart)
    expected = stats.ttest_ind(other, best, equal_var=False).confidence_interval(0.95)
    gap = configurations[1].gap
    assert configurations[1].tested_by == WELCH and gap is not None
    assert (gap.ci_low, gap.ci_high) == pytest.approx((expected.low, expected.high), rel=1e-9)


def test_configurations_run_on_the_same_seeds_are_tested_pair_by_pair():
    """Seed k moves both configurations alike (0.90, 0.93, 0.96, 0.94 and each 0.1-0.3 points under):
    Welch's test sees the seeds' spread and calls them tied; paired by seed, the second is behind on
    every seed, which scipy's ttest_rel weighs as the service does."""
    from scipy import stats

    best = [0.90, 0.93, 0.96, 0.94]
    other = [0.899, 0.928, 0.957, 0.938]
    configurations, _ = group_runs(_runs(1, 0.1, list(best)) + _runs(5, 0.2, list(other)))
    runner_up = configurations[1]
    assert (test := welch(best, other)) is not None and test.p_value > 0.5
    assert (runner_up.tested_by, runner_up.pairs, runner_up.tied_with_best) == (PAIRED, 4, False)
    assert runner_up.p_value == pytest.approx(stats.ttest_rel(best, other).pvalue, rel=1e-9)


def test_configurations_not_run_on_the_same_seeds_fall_back_to_welch():
    """Seeds 0-3 against seeds 2 and 3, or 4 and 5: Welch's test on all the runs, whose means are shown
    (paired on the two shared seeds, the gap was not that of the means beside it)."""
    first = _runs(1, 0.1, [0.95, 0.96, 0.955, 0.951])
    shifted = [
        Run(**{**vars(r), "seed": r.seed + 2, "job_id": r.job_id + 10}) for r in _runs(1, 0.2, [0.94, 0.945])
    ]
    configurations, _ = group_runs(first + shifted)
    assert (configurations[1].tested_by, configurations[1].pairs) == (WELCH, None)
    apart = [
        Run(**{**vars(r), "seed": r.seed + 4, "job_id": r.job_id + 20}) for r in _runs(1, 0.2, [0.94, 0.945])
    ]
    configurations, _ = group_runs(first + apart)
    assert (configurations[1].tested_by, configurations[1].pairs) == (WELCH, None)
    assert configurations[1].p_value == welch([0.95, 0.96, 0.955, 0.951], [0.94, 0.945]).p_value  # type: ignore[union-attr]


def test_a_class_without_images_has_no_accuracy_rather_than_zero():
    """A validation split of a few images lacked some digits: their per-class accuracies read 0.0 for both
    models, as if both got every such image wrong."""
    from service.selection import disagreement

    truth, a, b = np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([0, 0, 0])
    per_class = disagreement(truth, a, b, n_classes=3).per_class
    assert per_class == [(0, 2, 0.5, 1.0), (1, 1, 1.0, 0.0), (2, 0, None, None)]


def test_the_gap_is_that_of_the_means_shown_when_one_configuration_ran_more_seeds():
    """Best 0.90/0.93 on seeds 0-1, the other 0.89/0.925/0.30 on seeds 0-2: means 91.5 % and 70.5 %, but
    paired on seeds 0-1 the gap read -0.75 points."""
    best = _runs(1, 0.1, [0.90, 0.93])
    other = _runs(5, 0.2, [0.89, 0.925, 0.30])
    runner_up = group_runs(best + other)[0][1]
    assert runner_up.tested_by == WELCH and runner_up.gap is not None
    assert runner_up.gap.difference == pytest.approx((0.89 + 0.925 + 0.30) / 3 - (0.90 + 0.93) / 2)


def test_a_configuration_ahead_on_its_mean_but_ranked_after_for_a_failure_is_called_ahead():
    """Ranked after the best for a failed seed, 4.8 points above it on its mean: it was called 'behind'."""
    from service.selection import versus_best

    best = _runs(1, 0.1, [0.90, 0.902, 0.9])
    other = _runs(5, 0.2, [0.95, 0.951, 0.949, "failed"])
    runner_up = group_runs(best + other)[0][1]
    assert runner_up.failed == 1 and runner_up.tied_with_best is False and runner_up.gap is not None
    assert versus_best(runner_up.tied_with_best, False, runner_up.gap.difference) == "ahead"
    first = group_runs(best + other)[0][0]
    assert (first.versus_best, runner_up.versus_best) == ("best", "ahead")  # as the API sends
    assert versus_best(False, False, -0.01) == "behind" and versus_best(True, False, 0.05) == "can't tell"


def test_a_legend_counts_the_tests_against_the_best_and_says_none_is_corrected():
    """'one test of 3 against the best, uncorrected' read as if attached to the 'ahead' before it."""
    from service.selection import tests_note

    assert tests_note(3) == (
        "each configuration is its own test against the best: 3 tests, not corrected for multiple comparisons"
    )
    assert tests_note(1) == "one configuration tested against the best: one test"


def test_a_gap_past_what_two_accuracies_can_differ_is_cut_at_100_points_and_marked():
    """A newcomer's sweep showed "-77.00 (-103.17 to -50.83)" points behind the best."""
    assert gap_text(-0.77, -1.0317, -0.5083) == f"-77.00 (-100.00 to -50.83){CUT_MARK}"
    assert gap_text(-0.02, -0.03, -0.01) == "-2.00 (-3.00 to -1.00)"
    assert gap_cut(-1.0317, -0.5) and not gap_cut(-1.0, 1.0)


def test_runs_that_all_agree_are_said_to_agree_not_given_an_interval_of_no_width():
    """Two runs at 11.24 % read "11.24% (11.24-11.24)" in `mlplab sweeps`: as certain as can be."""
    from service.cli.client import _mean_ci

    alike = {"mean": 0.1124, "std": 0.0, "ci_low": 0.1124, "ci_high": 0.1124, "clipped": False}
    assert _mean_ci(alike) == "11.24% (every run alike)"
    assert _mean_ci(alike | {"std": 0.01, "ci_low": 0.1, "ci_high": 0.12}) == "11.24% (10.00-12.00)"


def test_a_configurations_training_time_is_its_runs_median_not_moved_by_one_slowed_run():
    """0.3 s, 0.3 s and one run slowed to 16 s by the host's other work: a mean of 5.5 s read as 'slower'."""
    runs = [
        Run(
            job_id=i,
            hyperparameters={"init": "glorot"},
            seed=i,
            succeeded=True,
            validation_accuracy=0.9,
            test_accuracy=0.9,
            seconds=s,
        )
        for i, s in enumerate([0.3, 16.0, 0.31])
    ]
    (configuration,), _ = group_runs(runs)
    assert configuration.seconds == 0.31


def test_a_configuration_counts_which_of_its_failed_runs_diverged():
    runs = _runs(1, 0.3, ["failed", "failed", 0.9])
    runs[0] = dataclasses.replace(runs[0], diverged=True)
    (configuration,), _ = group_runs(runs)
    assert (configuration.failed, configuration.diverged) == (2, 1)
