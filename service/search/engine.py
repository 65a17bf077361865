"""The decisions of a study, as pure functions of its configuration and its trials.

mlplab's jobs are the trials and the database is the only record of them. At each decision the
caller reads the study's trials (`TrialRecord`s) and asks; this module rebuilds an in-memory
Optuna study from them, lets Optuna's sampler or pruner decide, and throws the study away. The
same trials always give the same answer, so a decision repeated after a crash is the decision
that was lost (next_trials remembers its last answers by a digest of all they read: a lookup,
never a different answer). Samplers are seeded from (study seed,
number of trials so far); trials queued or running are in flight for Optuna (RUNNING), so a
sampler with a constant liar does not propose them again.

The objective is validation accuracy, maximised. Steps are epochs, counted from 1.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
from optuna.pruners import BasePruner, HyperbandPruner, SuccessiveHalvingPruner
from optuna.samplers import BaseSampler, RandomSampler
from optuna.storages import InMemoryStorage
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial

from service.lru import LRU
from service.quoting import counted
from service.search.study import (
    MOST_POINTS,
    PRUNERS,
    SAMPLERS,
    StudyCreate,
    decode,
    distributions,
    encode,
    grid_size,
    seed_for,
    stored_point,
)
from service.store.models import JobStatus

# Each decision builds a throwaway in-memory study; Optuna would log a line for every one.
optuna.logging.set_verbosity(logging.WARNING)

# A job's status -> the trial state Optuna sees.
STATES: dict[JobStatus, TrialState] = {
    JobStatus.queued: TrialState.RUNNING,  # in flight: its params are taken
    JobStatus.running: TrialState.RUNNING,
    JobStatus.succeeded: TrialState.COMPLETE,
    JobStatus.pruned: TrialState.PRUNED,
    JobStatus.failed: TrialState.FAIL,
    JobStatus.cancelled: TrialState.FAIL,
}
IN_FLIGHT = frozenset(status for status, state in STATES.items() if state == TrialState.RUNNING)

# Pruners whose memory (ASHA's rungs) lives in the trials' system attributes: rebuilt by replaying
# every report of every trial, as they were made, before the decision asked for.
_REPLAYED = (SuccessiveHalvingPruner, HyperbandPruner)


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the database has it: a job of the study."""

    number: int  # 0, 1, 2, ... in the order the trials were created
    params: Mapping[str, Any]  # the searched fields' spec values, as `next_params` returned them
    status: JobStatus
    value: float | None = None  # final validation accuracy; required when succeeded, ignored otherwise
    intermediate: Mapping[int, float] = field(default_factory=dict)  # epoch (from 1) -> validation accuracy

    def __post_init__(self) -> None:
        if self.status not in STATES:
            raise ValueError(
                f"trial {self.number}: unknown status {self.status!r}; known: {', '.join(STATES)}"
            )
        if self.status == JobStatus.succeeded and self.value is None:
            raise ValueError(f"trial {self.number} succeeded without a value")


def _frozen(
    record: TrialRecord, dists: Mapping[str, BaseDistribution], *, upto: int | None = None
) -> FrozenTrial:
    state = STATES[record.status]
    steps = {e: v for e, v in record.intermediate.items() if upto is None or e <= upto}
    return create_trial(
        state=state,
        value=record.value if state == TrialState.COMPLETE else None,
        params={name: _choice(dists[name], record.params[name]) for name in dists},
        distributions=dict(dists),
        intermediate_values=steps,
    )


def _choice(dist: BaseDistribution, value: Any) -> Any:
    """The value as Optuna holds it. An object choice is stored with its defaults filled in
    ({"patience": 3} as {"patience": 3, "min_delta": 0.0}): it stands for the choice it extends."""
    encoded = encode(value)
    if (
        not isinstance(dist, CategoricalDistribution)
        or encoded in dist.choices
        or not isinstance(value, dict)
    ):
        return encoded
    for choice in dist.choices:
        written = json.loads(choice) if isinstance(choice, str) and choice.startswith("{") else None
        if isinstance(written, dict) and all(value.get(k) == v for k, v in written.items()):
            return choice
    return encoded


def _sorted(trials: Iterable[TrialRecord]) -> list[TrialRecord]:
    records = sorted(trials, key=lambda t: t.number)
    if [t.number for t in records] != list(range(len(records))):
        raise ValueError(f"trial numbers must be 0..{len(records) - 1}, each once")
    return records


@dataclass(frozen=True)
class _Rebuilt:
    """A throwaway study and the storage under it (which the pruner replay writes to directly)."""

    study: Study
    storage: InMemoryStorage
    study_id: int

    @classmethod
    def empty(cls, sampler: BaseSampler, pruner: BasePruner | None = None) -> _Rebuilt:
        storage = InMemoryStorage()
        study_id = storage.create_new_study([StudyDirection.MAXIMIZE], study_name="mlplab")
        return cls(Study("mlplab", storage, sampler=sampler, pruner=pruner), storage, study_id)

    def add(self, frozen: FrozenTrial) -> int:
        return self.storage.create_new_trial(self.study_id, template_trial=frozen)

    def start(self, frozen: FrozenTrial) -> int:
        """Add a trial as it started: RUNNING, without reports (numbered by the order of the adds)."""
        return self.add(
            create_trial(state=TrialState.RUNNING, params=frozen.params, distributions=frozen.distributions)
        )

    def report(self, pruner: BasePruner, trial_id: int, frozen: FrozenTrial) -> bool:
        """Show the pruner a started trial's reports in turn, then end it as it ended.

        Returns the pruner's answer to its last report (False without reports).
        """
        answer = False
        for step, value in sorted(frozen.intermediate_values.items()):
            self.storage.set_trial_intermediate_value(trial_id, step, value)
            answer = pruner.prune(self.study, self.storage.get_trial(trial_id))
        if frozen.state != TrialState.RUNNING:
            self.storage.set_trial_state_values(trial_id, frozen.state, frozen.values)
        return answer


def build_study(
    config: StudyCreate,
    trials: Iterable[TrialRecord],
    *,
    sampler: BaseSampler | None = None,
    pruner: BasePruner | None = None,
) -> Study:
    """An in-memory Optuna study holding these trials (for Optuna's plots and evaluators too)."""
    rebuilt = _Rebuilt.empty(sampler or RandomSampler(seed=config.seed), pruner)
    dists = distributions(config)
    for record in _sorted(trials):
        rebuilt.add(_frozen(record, dists))
    return rebuilt.study


def trials_to_queue(config: StudyCreate, trials: Sequence[TrialRecord]) -> int:
    """How many new trials to queue now: up to `parallelism` in flight, `trials` in all."""
    in_flight = sum(t.status in IN_FLIGHT for t in trials)
    return max(0, min(config.parallelism - in_flight, config.trials - len(trials)))


def next_params(config: StudyCreate, trials: Sequence[TrialRecord]) -> dict[str, Any]:
    """The searched fields' values for trial number len(trials): TrainSpec(base | these) is its spec.

    A point that already has a trial is not proposed again while the space has one without: its job
    would train the same spec again. The sampler is asked again (each ask it sees as in flight), then
    a point is drawn among those without a trial; once every point of a finite space has one, or in
    a space too large to list, the sampler's point stands.

    Raises ValueError when a grid has no point left (check `grid_size` before extending one).
    """
    size = grid_size(config)
    if size is not None and len(trials) >= size:
        raise ValueError(f"the grid's {size} points all have a trial")
    sampler = SAMPLERS[config.sampler](config, len(trials))
    study, dists = build_study(config, trials, sampler=sampler), distributions(config)
    point = stored_point(config.base)
    tried = {point(t.params) for t in trials}
    for _ in range(ASKS):
        params = decode(config, study.ask(dists).params)
        if point(params) not in tried:
            return params
    untried = [p for p in finite_points(config) if point(p) not in tried]
    return random.Random(seed_for(config.seed, len(trials))).choice(untried) if untried else params


ASKS = 20  # asks for a point without a trial before drawing one among them


def finite_points(config: StudyCreate) -> list[dict[str, Any]]:
    """Every point of a space of choices and integer ranges, in order; [] for one with a real-valued
    dimension or of more than MOST_POINTS points (repeats are rare there)."""
    values: list[list[Any]] = []
    for dim in config.space.values():
        if dim.choice is not None:
            values.append(list(dim.choice))
        elif dim.int_ is not None:
            values.append(list(range(int(dim.int_[0]), int(dim.int_[1]) + 1)))
        else:
            return []
    if math.prod(len(v) for v in values) > MOST_POINTS:
        return []
    return [dict(zip(config.space, combo, strict=True)) for combo in itertools.product(*values)]


def next_trials(config: StudyCreate, trials: Sequence[TrialRecord]) -> list[dict[str, Any]]:
    """The params of every trial to queue now (`trials_to_queue` of them), each in flight for the next.

    Remembered for the last DECISIONS_KEPT inputs: a caller that asks before taking the database's
    write lock (store.jobs.foresee_end) makes the same question under the lock a lookup.
    """
    key = _decision_key(config, trials)
    remembered = _decided.get(key)
    if remembered is None:
        records, remembered = list(trials), []
        for _ in range(trials_to_queue(config, trials)):
            params = next_params(config, records)
            records.append(TrialRecord(len(records), params, JobStatus.queued))
            remembered.append(params)
        _decided.put(key, remembered)
    return copy.deepcopy(remembered)


DECISIONS_KEPT = 16
_decided: LRU[str, list[dict[str, Any]]] = LRU(DECISIONS_KEPT)
_analyses: LRU[str, tuple[list[str], dict[str, float]]] = LRU(DECISIONS_KEPT)


def _decision_key(config: StudyCreate, trials: Iterable[TrialRecord]) -> str:
    """A digest of everything a decision reads: the same digest, the same decision."""
    rows = [
        (t.number, dict(t.params), t.status, t.value, sorted(t.intermediate.items()))
        for t in sorted(trials, key=lambda t: t.number)
    ]
    text = json.dumps([config.model_dump(mode="json", by_alias=True), rows], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def should_prune(
    config: StudyCreate,
    trials: Sequence[TrialRecord],
    trial_number: int,
    epoch: int,
    value: float,
    *,
    pruner: BasePruner | None = None,
) -> bool:
    """Whether trial `trial_number`, which just reported `value` after `epoch`, should stop now.

    The pruner is the config's (`PRUNERS[config.pruner](config)`) unless one is given. The trial's
    reports after `epoch` in `trials`, if any, are ignored, so a repeated call answers the same.
    """
    pruner = pruner or PRUNERS[config.pruner](config)
    dists = distributions(config)
    records = _sorted(trials)
    if not 0 <= trial_number < len(records):
        raise ValueError(f"no trial {trial_number} among the {len(records)}")
    current = records[trial_number]
    current = TrialRecord(
        current.number, current.params, JobStatus.running, None, {**current.intermediate, epoch: value}
    )
    rebuilt = _Rebuilt.empty(RandomSampler(seed=config.seed), pruner)
    frozen = _frozen(current, dists, upto=epoch)
    # Every trial added in number order, so that each keeps its number: Hyperband's bracket is a hash
    # of it. The others' reports go first, the trial judged last, as the pruner would have met them.
    if not isinstance(pruner, _REPLAYED):
        ids = [rebuilt.add(frozen if r.number == trial_number else _frozen(r, dists)) for r in records]
        return pruner.prune(rebuilt.study, rebuilt.storage.get_trial(ids[trial_number]))
    started = [(rebuilt.start(frozen if r.number == trial_number else _frozen(r, dists)), r) for r in records]
    for trial_id, record in started:
        if record.number != trial_number:
            rebuilt.report(pruner, trial_id, _frozen(record, dists))
    return rebuilt.report(pruner, started[trial_number][0], frozen)


def best_trial(trials: Iterable[TrialRecord]) -> TrialRecord | None:
    """The succeeded trial with the highest final value (the earliest of equals); None before any."""
    succeeded = [t for t in trials if t.status == JobStatus.succeeded]
    return max(succeeded, key=lambda t: (t.value, -t.number), default=None)


MIN_TRIALS_FOR_IMPORTANCE = 2
FEW_TRIALS_FOR_IMPORTANCE = 10  # below it, importance is worded as the guess it is


def enough_for_importance(succeeded: int, varied: int) -> bool:
    """Whether so many succeeded trials can credit so many varied fields: more trials than fields (with no
    more points than fields any split of the credit fits: two over three credited one 97 %)."""
    return succeeded >= MIN_TRIALS_FOR_IMPORTANCE and succeeded > varied


def importance_warning(succeeded: int, scores: dict[str, float], varied: Sequence[str] = ()) -> str | None:
    """What scores from `succeeded` trials are worth, when they are few, or why the `varied` fields got
    none (too few trials, or all scored alike); None otherwise."""
    if varied and not scores and not enough_for_importance(succeeded, len(varied)):
        return (
            f"from {counted(succeeded, 'succeeded trial')}, {counted(len(varied), 'field')} varied "
            f"({', '.join(varied)}): importance needs more succeeded trials than varied fields to tell them "
            "apart (a pruned trial has no final accuracy)"
        )
    if varied and not scores:  # two trials or more (varied is of the succeeded trials), scored alike
        return (
            f"from {counted(succeeded, 'succeeded trial')}, all scored the same: {', '.join(varied)} varied, "
            "but nothing can be credited"
        )
    if not scores and succeeded == 1:  # nothing to compare it with (none yet: nothing to say)
        return "from 1 succeeded trial: importance needs two or more to compare"
    if not scores or succeeded >= FEW_TRIALS_FOR_IMPORTANCE:
        return None
    return (
        f"from {counted(succeeded, 'succeeded trial')}, fewer than {FEW_TRIALS_FOR_IMPORTANCE}: too few to say "
        "much; fields that varied together are not told apart, and how the credit splits between them is "
        "arbitrary"
    )


def _succeeded(trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    complete = [t for t in _sorted(trials) if STATES[t.status] == TrialState.COMPLETE]
    return [replace(t, number=i) for i, t in enumerate(complete)]  # numbered 0.. as a study's are


def analysis(config: StudyCreate, trials: Sequence[TrialRecord]) -> tuple[list[str], dict[str, float]]:
    """(varied, importance) of the succeeded trials, worked out once for the last DECISIONS_KEPT of them
    (a dashboard polls it; with hundreds of trials `varied` alone validates a spec per value)."""
    succeeded = _succeeded(trials)
    key = _decision_key(config, succeeded)
    known = _analyses.get(key)
    if known is None:
        point = stored_point(config.base)
        fields = [f for f in config.space if len({point({f: t.params[f]}) for t in succeeded}) > 1]
        scores: dict[str, float] = {}
        enough = enough_for_importance(len(succeeded), len(fields))
        if enough and len({t.value for t in succeeded}) > 1 and fields:
            study = build_study(config, succeeded)
            evaluator = PedAnovaImportanceEvaluator()
            evaluated = get_param_importances(study, evaluator=evaluator, params=fields, normalize=True)
            scores = {name: float(score) for name, score in evaluated.items()}
        known = (fields, scores)
        _analyses.put(key, known)
    return list(known[0]), dict(known[1])


def varied(config: StudyCreate, trials: Sequence[TrialRecord]) -> list[str]:
    """The searched fields that took more than one value among the succeeded trials: only these can
    explain a difference in their accuracies (PED-ANOVA credits a field held at one value too)."""
    return analysis(config, trials)[0]


def importance(config: StudyCreate, trials: Sequence[TrialRecord]) -> dict[str, float]:
    """Each varied field's importance for validation accuracy, most important first, summing to 1.

    Optuna's PED-ANOVA evaluator over the succeeded trials alone (it reads no other). {} with fewer
    than two succeeded trials or no more than the fields that varied among them, when every one scored
    the same or when no field took two values among them (nothing to explain).
    """
    return analysis(config, trials)[1]
