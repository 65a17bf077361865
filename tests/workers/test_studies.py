"""A study's trials through the real worker loop (in process, on the tiny IDX dataset of
test_worker.py): after each epoch the worker asks the study's pruner, and each end queues the next
trial. On SQLite, then PostgreSQL."""

from __future__ import annotations

import inspect
from unittest.mock import ANY

import pytest
from sqlalchemy import func, select

from service.lru import LRU
from service.search import PRUNERS, TEST_PRUNERS, StudyCreate, engine
from service.store.db import session_scope
from service.store.models import EpochMetric, JobStatus, StudyStatus
from service.store.queries import get_study, study_jobs
from service.store.studies import create_study
from tests.workers.test_worker import settings_for, small
from workers import worker


def run_study(sessions, db_url, data_dir, pruner: str, trials: int = 3, epochs: int = 3) -> list:
    """Create the study, run one worker until the queue is empty; its trials and their epoch counts."""
    config = StudyCreate.model_validate(
        {
            "base": small(epochs=epochs).model_dump(mode="json", exclude={"learning_rate"}),
            "space": {"learning_rate": {"float": [0.01, 0.5], "log": True}},
            "sampler": "random",
            "trials": trials,
            "parallelism": 2,
            "pruner": pruner,
        }
    )
    with session_scope(sessions) as s:
        study_id = create_study(s, config)[0].id
    assert worker.run_worker(settings_for(db_url, data_dir), once=True) == trials
    with session_scope(sessions) as s:
        assert get_study(s, study_id).status == StudyStatus.finished
        jobs = study_jobs(s, study_id)
        epochs_of = dict(
            s.execute(select(EpochMetric.job_id, func.count()).group_by(EpochMetric.job_id)).all()
        )
    return [(job.trial_number, job.status, epochs_of.get(job.id, 0)) for job in jobs]


@pytest.fixture
def test_pruners(monkeypatch):
    for name, make in TEST_PRUNERS.items():
        monkeypatch.setitem(PRUNERS, name, make)


def test_a_pruner_that_always_prunes_ends_every_trial_after_its_first_epoch(
    test_pruners, sessions, db_url, data_dir
):
    assert run_study(sessions, db_url, data_dir, "always") == [(n, JobStatus.pruned, 1) for n in range(3)]


def test_a_pruner_that_never_prunes_runs_every_trial_to_the_end(test_pruners, sessions, db_url, data_dir):
    assert run_study(sessions, db_url, data_dir, "never") == [(n, JobStatus.succeeded, 3) for n in range(3)]


@pytest.mark.parametrize("pruner", ["never", "always"])
def test_a_worker_asks_the_sampler_before_the_write_transaction_that_ends_a_trial(
    test_pruners, sessions, db_url, data_dir, monkeypatch, pruner
):
    """Each end's next trial is decided before its transaction (foresee_end): under the lock, a lookup."""
    monkeypatch.setattr(engine, "_decided", LRU(engine.DECISIONS_KEPT))
    asked, ask = [], engine.next_params

    def spy(config, trials):
        if any(t.status != JobStatus.queued for t in trials):  # after an end, not the study's creation
            asked.append(any(frame.function == "advance_study" for frame in inspect.stack()))
        return ask(config, trials)

    monkeypatch.setattr(engine, "next_params", spy)
    ended = JobStatus.succeeded if pruner == "never" else JobStatus.pruned
    assert run_study(sessions, db_url, data_dir, pruner, trials=4) == [(n, ended, ANY) for n in range(4)]
    assert asked and not any(asked)  # asked, and never with the write lock held
