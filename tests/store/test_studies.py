"""A study's trials in the store: queued, advanced in the transaction that ends one, never lost
nor duplicated; on an SQLite file, then PostgreSQL (tests/conftest.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from service.lru import LRU
from service.ml.train import EpochEnd
from service.search import StudyCreate, engine
from service.store.db import session_scope
from service.store.jobs import (
    claim_job,
    enqueue_job,
    fail_job,
    finish_job,
    foresee_end,
    mark_cancelled,
    prune_job,
    record_epoch,
    requeue_stalled,
)
from service.store.models import Job, JobStatus, Study, StudyStatus
from service.store.queries import get_study, study_jobs, study_trials
from service.store.studies import StudyConflict, cancel_study, create_study, extend_study
from tests.factories import job_body, tiny_spec
from tests.store.test_jobs import T0, result


def config(**changes) -> StudyCreate:
    """Four trials over the learning rate, two in flight, a seeded random sampler."""
    return StudyCreate.model_validate(
        {
            "base": job_body(),
            "space": {"learning_rate": {"float": [0.01, 1.0], "log": True}},
            "sampler": "random",
            "trials": 4,
            "parallelism": 2,
        }
        | changes
    )


def create(sessions, **changes) -> int:
    with session_scope(sessions) as s:
        study, _ = create_study(s, config(**changes), now=T0)
        return study.id


def trials(sessions, study_id: int) -> list[Job]:
    with session_scope(sessions) as s:
        return study_jobs(s, study_id)


def study(sessions, study_id: int) -> Study:
    with session_scope(sessions) as s:
        found = get_study(s, study_id)
        assert found is not None
        return found


def run_one(sessions, end: str = "succeed", accuracy: float = 0.5) -> Job:
    """Claim the oldest queued job and end it as `end` says, recording one epoch first."""
    with session_scope(sessions) as s:
        job = claim_job(s, "w", now=T0)
        assert job is not None
        record_epoch(
            s, job.id, "w", EpochEnd(1, 0.5, 0.5, 0.5, 1.0, validation_loss=0.5, validation_accuracy=accuracy)
        )
    with session_scope(sessions) as s:
        if end == "succeed":
            finish_job(s, job.id, "w", result(validation_accuracy=accuracy))
        elif end == "fail":
            fail_job(s, job.id, "w", "boom")
        else:
            prune_job(s, job.id, "w")
    return job


def test_a_study_starts_with_parallelism_trials_and_each_end_queues_the_next(sessions):
    study_id = create(sessions)
    first = trials(sessions, study_id)
    assert [(j.trial_number, j.status) for j in first] == [(0, JobStatus.queued), (1, JobStatus.queued)]
    rates = {j.spec["learning_rate"] for j in first}
    assert len(rates) == 2 and all(0.01 <= r <= 1.0 for r in rates)
    for end in ("succeed", "prune", "fail", "succeed"):
        run_one(sessions, end)
        in_flight = [
            j for j in trials(sessions, study_id) if j.status in (JobStatus.queued, JobStatus.running)
        ]
        assert len(in_flight) <= 2
    ended = trials(sessions, study_id)
    assert [j.trial_number for j in ended] == [0, 1, 2, 3]
    assert [j.status for j in ended] == [
        JobStatus.succeeded,
        JobStatus.pruned,
        JobStatus.failed,
        JobStatus.succeeded,
    ]
    assert study(sessions, study_id).status == StudyStatus.finished


def test_the_pruned_trial_keeps_its_curve_and_the_engine_sees_it(sessions):
    study_id = create(sessions, trials=1, parallelism=1)
    job = run_one(sessions, "prune", accuracy=0.25)
    with session_scope(sessions) as s:
        _, records = study_trials(s, get_study(s, study_id))
    assert records[0].status == "pruned" and dict(records[0].intermediate) == {1: 0.25}
    assert trials(sessions, study_id)[0].id == job.id


def test_an_end_rolled_back_queues_nothing(sessions):
    """A crash before the commit that ends a trial loses the end and the next trial together."""
    study_id = create(sessions, trials=3, parallelism=1)
    with session_scope(sessions) as s:
        job = claim_job(s, "w", now=T0)
    with pytest.raises(RuntimeError), session_scope(sessions) as s:
        fail_job(s, job.id, "w", "boom")
        assert len(study_jobs(s, study_id)) == 2  # queued in the same transaction...
        raise RuntimeError("the worker dies before its commit")
    assert [(j.trial_number, j.status) for j in trials(sessions, study_id)] == [(0, JobStatus.running)]


def test_a_stalled_trial_is_requeued_and_nothing_new_is_asked(sessions):
    study_id = create(sessions, trials=3, parallelism=1)
    with session_scope(sessions) as s:
        claim_job(s, "w", now=T0)
    with session_scope(sessions) as s:
        requeue_stalled(s, T0 + timedelta(seconds=60), lease_seconds=30, max_attempts=3)
    assert [(j.trial_number, j.status) for j in trials(sessions, study_id)] == [(0, JobStatus.queued)]
    with session_scope(sessions) as s:  # the last attempt fails: now the next trial is asked for
        claim_job(s, "w", now=T0)
        requeue_stalled(s, T0 + timedelta(seconds=60), lease_seconds=30, max_attempts=2)
    assert [j.status for j in trials(sessions, study_id)] == [JobStatus.failed, JobStatus.queued]


@pytest.mark.parametrize("end", ["succeed", "prune", "fail"])
def test_a_foreseen_end_asks_the_sampler_nothing_under_the_write_lock(sessions, monkeypatch, end):
    """The worker asks before its end's transaction; under the lock the decision is looked up, and it is
    the one the sampler gave (TPE: each ask costs tens of milliseconds with the lock held)."""
    monkeypatch.setattr(engine, "_decided", LRU(engine.DECISIONS_KEPT))  # this test's decisions only
    study_id = create(sessions, trials=12, parallelism=1, sampler="tpe")
    for _ in range(3):
        run_one(sessions)
    with session_scope(sessions) as s:
        job = claim_job(s, "w", now=T0)
        record_epoch(
            s, job.id, "w", EpochEnd(1, 0.5, 0.5, 0.5, 1.0, validation_loss=0.5, validation_accuracy=0.7)
        )
    status = {"succeed": JobStatus.succeeded, "prune": JobStatus.pruned, "fail": JobStatus.failed}[end]
    with session_scope(sessions) as s:
        foresee_end(s, job.id, status, 0.7 if end == "succeed" else None)
    asked = []
    monkeypatch.setattr(engine, "next_params", lambda *args: asked.append(args) or {"learning_rate": 0.5})
    with session_scope(sessions) as s:
        {"succeed": lambda: finish_job(s, job.id, "w", result(validation_accuracy=0.7)),
         "prune": lambda: prune_job(s, job.id, "w"),
         "fail": lambda: fail_job(s, job.id, "w", "boom")}[end]()  # fmt: skip
    assert asked == []
    queued = trials(sessions, study_id)[-1]
    assert queued.trial_number == 4 and queued.status == JobStatus.queued
    assert queued.spec["learning_rate"] != 0.5 and 0.01 <= queued.spec["learning_rate"] <= 1.0


def test_an_end_foreseen_wrongly_is_decided_afresh(sessions, monkeypatch):
    monkeypatch.setattr(engine, "_decided", LRU(engine.DECISIONS_KEPT))
    study_id = create(sessions, trials=4, parallelism=1)
    with session_scope(sessions) as s:
        job = claim_job(s, "w", now=T0)
        foresee_end(s, job.id, JobStatus.succeeded, 0.9)  # it will fail instead
    asked = []
    monkeypatch.setattr(engine, "next_params", lambda *args: asked.append(args) or {"learning_rate": 0.5})
    with session_scope(sessions) as s:
        fail_job(s, job.id, "w", "boom")
    assert len(asked) == 1 and trials(sessions, study_id)[-1].spec["learning_rate"] == 0.5


def test_a_trial_number_is_never_given_twice(sessions):
    study_id = create(sessions, trials=2, parallelism=1)
    with pytest.raises(IntegrityError), session_scope(sessions) as s:
        enqueue_job(s, tiny_spec(), trial=(study_id, 0))


def test_pruned_is_a_status_and_a_made_up_one_is_not(sessions):
    with session_scope(sessions) as s:
        job_id = enqueue_job(s, tiny_spec()).id
    with session_scope(sessions) as s:
        s.execute(text("UPDATE jobs SET status = 'pruned' WHERE id = :id"), {"id": job_id})
    with pytest.raises(IntegrityError), session_scope(sessions) as s:
        s.execute(text("UPDATE jobs SET status = 'bogus' WHERE id = :id"), {"id": job_id})


def test_cancel_stops_the_study_and_its_queued_trials_and_asks_running_ones_to_stop(sessions):
    study_id = create(sessions)
    with session_scope(sessions) as s:
        running = claim_job(s, "w", now=T0)
    with session_scope(sessions) as s:
        cancel_study(s, study_id, now=T0)
    by_number = {j.trial_number: j for j in trials(sessions, study_id)}
    assert by_number[1].status == JobStatus.cancelled
    assert by_number[0].status == JobStatus.running and by_number[0].cancel_requested
    with session_scope(sessions) as s:  # its worker stops it: nothing new is asked for
        mark_cancelled(s, running.id, "w")
    assert len(trials(sessions, study_id)) == 2
    assert study(sessions, study_id).status == StudyStatus.cancelled
    with pytest.raises(StudyConflict), session_scope(sessions) as s:
        cancel_study(s, study_id)
    with pytest.raises(StudyConflict), session_scope(sessions) as s:
        extend_study(s, study_id, 2)


def test_extend_runs_a_finished_study_again(sessions):
    study_id = create(sessions, trials=1, parallelism=2)
    run_one(sessions)
    assert study(sessions, study_id).status == StudyStatus.finished
    with session_scope(sessions) as s:
        _, queued = extend_study(s, study_id, 3)
    assert [j.trial_number for j in queued] == [1, 2]
    assert study(sessions, study_id).status == StudyStatus.running and study(sessions, study_id).trials == 4
