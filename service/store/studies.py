"""A study's own verbs: create it, cancel it, extend it. Its trials are jobs (service.store.jobs), and
every end of one advances the study in the same transaction (jobs.advance_study).

    create_study --> running --(last trial ended)--> finished --extend_study--> running
                       |  `--extend_study--> running (more trials)
                       `--cancel_study--> cancelled

Each function takes the caller's session and neither commits nor closes it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from service.quoting import counted
from service.search import IN_FLIGHT, StudyCreate, space_size, space_word
from service.store.db import begin_write
from service.store.jobs import advance_study, drop_checkpoints, lock_study
from service.store.models import Job, JobStatus, Study, StudyStatus, utcnow
from service.store.queries import get_study


class StudyNotFound(LookupError):
    """No study has this id."""


class StudyConflict(Exception):
    """The study is in a state that doesn't allow this (e.g. extending a cancelled study)."""


def create_study(
    session: Session, config: StudyCreate, now: datetime | None = None, client: str | None = None
) -> tuple[Study, list[Job]]:
    """(nothing) -> running, with its first trials queued (min(parallelism, trials) of them), in one
    transaction. `config` must be one check_study accepted; `client`, the address that asked for it (its
    trials' too). Returns the study and its queued jobs."""
    begin_write(session)
    now = now or utcnow()
    study = Study(
        config=config.model_dump(mode="json"),
        status=StudyStatus.running,
        trials=config.trials,
        created_at=now,
        client=client,
    )
    session.add(study)
    session.flush()
    return study, advance_study(session, study.id, now)


def _locked(session: Session, study_id: int) -> Study:
    study = lock_study(session, study_id)
    if study is None:
        raise StudyNotFound(f"study {study_id} not found")
    return study


def cancel_study(session: Session, study_id: int, now: datetime | None = None) -> Study:
    """running -> cancelled: no trial is asked for again; queued trials -> cancelled, running ones are
    asked to stop (as cancel_job). Finished trials keep their results.

    Raises StudyNotFound, or StudyConflict when it is not running.
    """
    begin_write(session)
    now = now or utcnow()
    if get_study(session, study_id) is None:
        raise StudyNotFound(f"study {study_id} not found")
    # The jobs first, then the study's row: the order every trial's end takes its locks in.
    in_flight = (Job.study_id == study_id, Job.status.in_(IN_FLIGHT))
    session.execute(update(Job).where(*in_flight).values(cancel_requested=True))
    session.execute(
        update(Job)
        .where(Job.study_id == study_id, Job.status == JobStatus.queued)
        .values(status=JobStatus.cancelled, finished_at=now)
    )
    drop_checkpoints(session, Job.study_id == study_id)
    study = _locked(session, study_id)
    if study.status != StudyStatus.running:
        raise StudyConflict(f"study {study_id} is already {study.status}")
    study.status, study.finished_at = StudyStatus.cancelled, now
    session.flush()
    return study


def extend_study(
    session: Session, study_id: int, trials: int, now: datetime | None = None
) -> tuple[Study, list[Job]]:
    """running or finished -> running, with `trials` more trials asked for; those that fit in
    `parallelism` are queued now. Returns the study and the jobs queued.

    Raises StudyNotFound; StudyConflict for a cancelled study; ValueError when its space (a grid's, or one of
    choices and integer ranges) has fewer points left than asked.
    """
    begin_write(session)
    now = now or utcnow()
    study = _locked(session, study_id)
    if study.status == StudyStatus.cancelled:
        raise StudyConflict(f"study {study_id} is cancelled")
    config = StudyCreate.model_validate(study.config)
    size = space_size(config)
    if size is not None and study.trials + trials > size:
        raise ValueError(
            f"the {space_word(config)} has {counted(size, 'point')} and {study.trials:,} have a trial: at most "
            f"{size - study.trials:,} more"
        )
    study.trials += trials
    study.status, study.finished_at = StudyStatus.running, None
    session.flush()
    return study, advance_study(session, study.id, now)
