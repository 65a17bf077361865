"""Which configuration is best, and by how much: the statistics behind every ranking (scipy.stats).

Pure functions of accuracies and predictions; the API and bench/train.py present them.

- A ranking reads validation accuracy. Runs without a validation split (validation_size 0) have only
  their test accuracy: they come after those with one, ranked by it, and `ranked_by` says so.
- A configuration's runs (one per seed) give a mean, a sample standard deviation and a 95 %
  Student's t confidence interval (clipped to [0, 1], and flagged so). A t-test weighs each against the
  best: paired by seed where both ran the same two seeds or more (seed k gives every configuration its
  data order and, where the network matches, its initial weights, so their results move together),
  Welch's otherwise, on the runs whose means are shown. p >= ALPHA is `tied_with_best`, in words "can't
  tell": with few seeds no tie, which the same test's 95 % interval of the gap shows.
- Configurations without a succeeded run rank last; among the rest, one whose runs failed on some seed
  ranks after those without a failure: the mean of its survivors alone would flatter it.
- Two models compared image by image: McNemar's exact test on the images exactly one gets right.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from service.quoting import counted

CONFIDENCE = 0.95
ALPHA = 0.05

BY_VALIDATION = "validation_accuracy"
BY_TEST = "test_accuracy (no validation split)"
BY_BOTH = "validation_accuracy, then test_accuracy for those without a validation split"


def ranked_by(total: int, validated: int) -> str:
    """What a ranking of `total` runs, `validated` of them with a validation accuracy, was ordered by."""
    if validated == total:
        return BY_VALIDATION
    return BY_TEST if validated == 0 else BY_BOTH


# held-out images below which one image moves a validation accuracy by over 0.1 point
SMALL_VALIDATION = 1_000


def validation_note(size: int) -> str | None:
    """What a validation accuracy measured on `size` images is worth for ranking, when too few to rank by
    (None with SMALL_VALIDATION or more, or none held out: ranked on test)."""
    if not 0 < size < SMALL_VALIDATION:
        return None
    return (
        f"validated on {size:,} images: one image is {100 / size:.3g} points of its validation accuracy, "
        f"which ranks it, so its rank is luck as much as skill; hold out {SMALL_VALIDATION:,} or more "
        "(validation_size) to rank it"
    )


# Accuracies lie in [0, 1]: a run without a validation split ranks by its test accuracy less this, after
# every run with one. The store's index on BEST_FIRST holds the same expression.
UNVALIDATED = 2.0


def rank_key(validation: float | None, test: float | None, job_id: int = 0) -> tuple[float, int]:
    """Sort key, best first, the order of the store's BEST_FIRST (which every "best" and promote use):
    by validation accuracy; without one, after, by test, the only figure such a run has; equals, the
    newer job. Test accuracy never breaks a tie between validated runs: that would select on the test set."""
    if validation is not None:
        return (-validation, -job_id)
    return (UNVALIDATED - (test if test is not None else -1.0), -job_id)


@dataclass(frozen=True)
class Summary:
    """Several runs' accuracies: their mean, sample standard deviation and 95 % confidence interval."""

    n: int
    mean: float
    std: float | None  # None for one run
    ci_low: float | None
    ci_high: float | None
    clipped: bool = False  # Student's t reached past 0 or 1 and was cut there


def summarize(values: Sequence[float]) -> Summary | None:
    """The mean and Student's t interval of `values`, accuracies (None when there are none); the interval
    is clipped to [0, 1], where an accuracy lies (two seeds' interval reached -0.19)."""
    n = len(values)
    if n == 0:
        return None
    mean = _mean(values)
    if n == 1:
        return Summary(1, mean, None, None, None)
    # every run agrees: scipy's interval is undefined at scale 0, the interval is a point
    if _constant(values):
        return Summary(n, mean, 0.0, mean, mean)
    std = float(np.std(values, ddof=1))
    # scipy here, not at the top: the CLI ranks with rank_key without paying scipy's import. Student's
    # quantile straight from scipy.special: stats.t.interval computes the same, at a hundred times the cost.
    from scipy.special import stdtrit

    scale = std / math.sqrt(n)
    low, high = (
        float(stdtrit(n - 1, q) * scale + mean) for q in ((1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2)
    )
    return Summary(n, mean, std, max(low, 0.0), min(high, 1.0), low < 0.0 or high > 1.0)


def _constant(values: Sequence[float]) -> bool:
    """Every value the same: their variance is 0, though np.var rounds it to 1e-34 (0.099 three times)."""
    return min(values) == max(values)


def _mean(values: Sequence[float]) -> float:
    """Their mean; equal values' is that value (np.mean of 0.099 three times is 0.09899999999999999)."""
    return float(values[0]) if _constant(values) else float(np.mean(values))


@dataclass(frozen=True)
class TTest:
    """A t-test of a - b: its two-sided p-value, and the 95 % interval of the difference it tests."""

    p_value: float
    difference: float
    ci_low: float
    ci_high: float


def _t_test(difference: float, se: float, df: float) -> TTest:
    from scipy.special import stdtr, stdtrit  # scipy.stats' t-tests, without their per-call overhead

    half = float(stdtrit(df, (1 + CONFIDENCE) / 2)) * se
    p = float(2 * stdtr(df, -abs(difference / se)))
    return TTest(p, difference, difference - half, difference + half)


def _no_spread(difference: float) -> TTest | None:
    """Nothing to weigh: equal results are level (p = 1); a constant non-zero difference would be p = 0, a
    certainty no data give, so no test."""
    return TTest(1.0, 0.0, 0.0, 0.0) if difference == 0 else None


def welch(a: Sequence[float], b: Sequence[float]) -> TTest | None:
    """Welch's t-test of mean(a) - mean(b); None when either has fewer than 2, or neither varies and
    their means differ."""
    if len(a) < 2 or len(b) < 2:
        return None
    if _constant(a) and _constant(b):
        return _no_spread(a[0] - b[0])
    va, vb = float(np.var(a, ddof=1)) / len(a), float(np.var(b, ddof=1)) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    return _t_test(_mean(a) - _mean(b), math.sqrt(va + vb), df)


def paired(a: Sequence[float], b: Sequence[float]) -> TTest | None:
    """The paired t-test of a[k] - b[k]; None for fewer than 2 pairs, or when every pair differs by the
    same non-zero amount."""
    differences = [x - y for x, y in zip(a, b, strict=True)]
    if len(differences) < 2:
        return None
    if _constant(differences):
        return _no_spread(differences[0])
    n = len(differences)
    return _t_test(_mean(differences), float(np.std(differences, ddof=1)) / math.sqrt(n), n - 1)


Tested = Literal["paired", "welch"]
PAIRED: Tested = "paired"  # the paired t-test over the seeds both configurations ran
WELCH: Tested = "welch"  # Welch's t-test, when the two did not run the same seeds


def how_tested(tested_by: Tested | None, pairs: int | None) -> str:
    """How a configuration was tested against the best, in words: "paired t-test, 3 seeds"."""
    if tested_by == PAIRED:
        return f"paired t-test, {pairs} seeds"
    return "Welch's t-test" if tested_by == WELCH else "no test"


# What a configuration's test against the best says, in a word: p >= ALPHA is "can't tell", not a tie.
VERSUS_BEST_NOTE = (
    "can't tell (p >= 0.05): the seeds do not tell it from the best, which with few seeds is no tie; "
    "behind (p < 0.05): unlikely to be seed noise alone; ahead: ahead on its mean, ranked after for its "
    "failed runs"
)


# After a McNemar verdict on two models (the compare page mirrors it): what it does not say.
MODELS_NOT_SETTINGS = (
    "McNemar weighs these two trained models, not the settings behind them: another seed trains another "
    "model (to tell settings apart, compare a sweep's replicates)"
)


def tests_note(tests: int) -> str:
    """Under every "vs best" legend: how many tests weighed configurations against the best."""
    if tests == 1:
        return "one configuration tested against the best: one test"
    return f"each configuration is its own test against the best: {counted(tests, 'test')}, not corrected for multiple comparisons"


Versus = Literal["best", "can't tell", "behind", "ahead"]


def versus_best(tied: bool | None, best: bool, difference: float | None = None) -> Versus | None:
    """ "best", "can't tell", "behind", "ahead" (a mean above the best's, ranked after for a failed run);
    None without a test."""
    if best:
        return "best"
    if tied is None:
        return None
    if tied:
        return "can't tell"
    return "ahead" if difference is not None and difference > 0 else "behind"


CUT_MARK = "*"  # an interval cut where its figure cannot go: at 0 or 100 %, a gap at ±100 points
CUT_NOTE = (
    "an interval cut at 0 or 100 % (a gap's at ±100 points): with so few seeds Student's t reaches past "
    "it (more seeds narrow it)"
)


def gap_text(difference: float, low: float, high: float) -> str:
    """A gap to the best and its 95 % interval, in points: '-31.78 (-60.40 to -3.16)'; an interval past
    what two accuracies' difference can be cut at ±100 points and marked ('-77.00 (-100.00 to -50.83)*')."""
    cut = CUT_MARK if gap_cut(low, high) else ""
    return f"{100 * difference:+.2f} ({100 * max(low, -1.0):+.2f} to {100 * min(high, 1.0):+.2f}){cut}"


def gap_cut(low: float, high: float) -> bool:
    """Whether a gap's interval reaches past ±1, where no difference of two accuracies lies."""
    return low < -1.0 or high > 1.0


# --- configurations of a sweep -----------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One job of a sweep, as the grouping needs it."""

    job_id: int
    hyperparameters: dict[str, Any]  # what sets its configuration apart (the spec without the seed)
    seed: int
    succeeded: bool
    validation_accuracy: float | None = None
    test_accuracy: float | None = None
    seconds: float | None = None  # training time
    failed: bool = False  # it ended failed (diverged, say): counts against its configuration
    diverged: bool = False  # failed as training diverged


@dataclass(frozen=True)
class Configuration:
    hyperparameters: dict[str, Any]
    job_ids: list[int]
    seeds: list[int]
    validation: Summary | None  # of its succeeded runs
    test: Summary | None
    seconds: float | None  # median training time: one run slowed by the host's other work does not move it
    failed: int  # its runs that failed: a configuration with any ranks after those without
    diverged: int  # of those, the runs whose training diverged
    tied_with_best: bool | None  # None when there is nothing to test (fewer than 2 runs on a side)
    p_value: float | None  # the test's against the best; None for the best itself
    tested_by: Tested | None = None  # PAIRED or WELCH: which test gave p_value
    pairs: int | None = None  # the seeds the paired test paired
    gap: TTest | None = None  # that test: this configuration's accuracy minus the best's, with its interval

    @property
    def n(self) -> int:
        """Its succeeded runs."""
        return 0 if self.test is None else self.test.n

    @property
    def versus_best(self) -> Versus | None:
        """Its test against the best in a word (the best: tested against nothing, tied with itself)."""
        best = self.p_value is None and self.tied_with_best is True
        return versus_best(self.tied_with_best, best, None if self.gap is None else self.gap.difference)


def group_runs(runs: Sequence[Run]) -> tuple[list[Configuration], str]:
    """The runs grouped by hyperparameters (in order of first appearance), ranked, and what ranked them."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(json.dumps(run.hyperparameters, sort_keys=True), []).append(run)
    members = list(groups.values())
    samples = [_samples(group) for group in members]
    most = max((len(test) for _, test, _ in samples), default=0)
    order = sorted(range(len(members)), key=lambda i: _config_key(samples[i], members[i], most))
    configurations = []
    for rank, i in enumerate(order):
        validation, test, seconds = samples[i]
        if rank == 0:  # the best: tied with itself once it has a result
            verdict = Verdict(None, True if test else None)
        else:
            verdict = _against(samples[order[0]], samples[i])
        configurations.append(
            Configuration(
                hyperparameters=members[i][0].hyperparameters,
                job_ids=[run.job_id for run in members[i]],
                seeds=[run.seed for run in members[i]],
                validation=summarize(list(validation.values())),
                test=summarize(list(test.values())),
                seconds=float(np.median(seconds)) if seconds else None,
                failed=sum(run.failed for run in members[i]),
                diverged=sum(run.diverged for run in members[i]),
                tied_with_best=verdict.tied,
                p_value=verdict.p_value,
                tested_by=verdict.tested_by,
                pairs=verdict.pairs,
                gap=verdict.gap,
            )
        )
    succeeded = [run for run in runs if run.succeeded]
    return configurations, ranked_by(
        len(succeeded), sum(r.validation_accuracy is not None for r in succeeded)
    )


# validation, test (each by seed) and seconds of succeeded runs
Samples = tuple[dict[int, float], dict[int, float], list[float]]


def _samples(group: list[Run]) -> Samples:
    done = [run for run in group if run.succeeded]
    return (
        {r.seed: r.validation_accuracy for r in done if r.validation_accuracy is not None},
        {r.seed: r.test_accuracy for r in done if r.test_accuracy is not None},
        [r.seconds for r in done if r.seconds is not None],
    )


def _config_key(samples: Samples, group: list[Run], most: int) -> tuple[bool, bool, bool, tuple[float, int]]:
    """Those with a result first; among them, where any has several results (`most`), those with several:
    one run of a cancelled sweep is no match for the mean of eight, failures or not; then those without
    a failed run (its survivors alone would flatter it); then rank_key of the means, equals as their
    newest runs (so one run a configuration ranks as its job)."""
    validation, test, _ = samples
    newest = max((run.job_id for run in group if run.succeeded), default=0)
    return (
        not test,
        len(test) < min(most, 2),
        any(run.failed for run in group),
        rank_key(
            _mean(list(validation.values())) if validation else None,
            _mean(list(test.values())) if test else None,
            newest,
        ),
    )


@dataclass(frozen=True)
class Verdict:
    p_value: float | None
    tied: bool | None
    tested_by: Tested | None = None
    pairs: int | None = None
    gap: TTest | None = None


def _against(best: Samples, other: Samples) -> Verdict:
    """`other` tested against the best on the accuracy that ranked them: paired by seed where both ran
    the same two seeds or more, else Welch's, so that the gap is that of the means shown; and whether tied."""
    if bool(best[0]) != bool(other[0]):  # one has a validation split, the other not: not comparable
        return Verdict(None, None)
    a, b = best[0] if best[0] else best[1], other[0] if best[0] else other[1]
    # paired on a subset of the seeds, the gap would not be that of the means shown beside it
    if a.keys() == b.keys() and len(a) >= 2:
        seeds = sorted(a)
        gap, test = paired([b[k] for k in seeds], [a[k] for k in seeds]), PAIRED
    else:
        gap, test = welch(list(b.values()), list(a.values())), WELCH
    if gap is None:
        return Verdict(None, None)
    p = gap.p_value
    return Verdict(p, p >= ALPHA, test, len(a) if test == PAIRED else None, gap)


# --- two models, image by image -----------------------------------------------------------------


@dataclass(frozen=True)
class Disagreement:
    """Two models' predictions of the same images, compared with the truth."""

    a_right_b_wrong: int
    b_right_a_wrong: int
    both_right: int
    both_wrong: int
    p_value: float  # McNemar's exact test on the first two counts
    per_class: list[tuple[int, int, float | None, float | None]]  # (class, images, A's and B's accuracy)
    disagreeing: NDArray[np.int64]  # the images whose predicted classes differ, in index order


SMALLEST_SHOWN_P = 1e-300  # a p-value that underflowed to 0.0 is shown as below this


def p_text(p: float) -> str:
    """'p = 0.034'; 'p < 1e-300' for a p-value too small for a float (0.0): not a certainty."""
    return f"p = {p:.3g}" if p > 0 else f"p < {SMALLEST_SHOWN_P:g}"


def mcnemar_p(a_only: int, b_only: int) -> float:
    """McNemar's exact test: under no difference, the images only one model gets right split 50/50."""
    from scipy import stats

    n = a_only + b_only
    return 1.0 if n == 0 else float(stats.binomtest(a_only, n, 0.5).pvalue)


def disagreement(truth: NDArray[Any], a: NDArray[Any], b: NDArray[Any], n_classes: int) -> Disagreement:
    """How predictions `a` and `b` of the images labelled `truth` differ."""
    right_a, right_b = a == truth, b == truth
    a_only, b_only = int(np.sum(right_a & ~right_b)), int(np.sum(right_b & ~right_a))
    per_class = []
    for c in range(n_classes):
        of_c = truth == c
        n = int(of_c.sum())
        per_class.append(
            (c, n, float(right_a[of_c].mean()) if n else None, float(right_b[of_c].mean()) if n else None)
        )
    return Disagreement(
        a_right_b_wrong=a_only,
        b_right_a_wrong=b_only,
        both_right=int(np.sum(right_a & right_b)),
        both_wrong=int(np.sum(~right_a & ~right_b)),
        p_value=mcnemar_p(a_only, b_only),
        per_class=per_class,
        disagreeing=np.flatnonzero(a != b).astype(np.int64),
    )
