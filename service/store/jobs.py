"""Every transition of a job between its states (service.store.models.JobStatus): the queue's verbs.

Each function takes the caller's session and neither commits nor closes it: one
``session_scope()`` per step. A transition that writes starts its transaction with
the write lock (``begin_write``: BEGIN IMMEDIATE on SQLite) and makes its first
statement a conditional UPDATE, so two callers can't both win it.

Writes by a worker are guarded by ``worker_id = <its id> AND status = 'running'``:
a worker whose job was taken away (lease expired and re-queued, or cancelled and
finished) gets ``LeaseLost`` and has changed nothing.

    queued --claim_job--> running --finish_job--> succeeded
      |  ^                  |  |  |`--fail_job--> failed
      |  `--release_job-----'  |  `--prune_job--> pruned (a study's trial)
      |     requeue_stalled    `--mark_cancelled / cancel_job--> cancelled
      `--cancel_job--> cancelled

A job that is a study's trial advances its study (advance_study) in the transaction that ends it,
whichever end it is: the next trials are queued, or the study finishes, in the same commit as the
end, so a crash at any moment neither loses a trial nor queues one twice (docs/reliability.md).
Locks are taken jobs first, then the study's row, in every transaction that takes both.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import ValidationError
from sqlalchemy import ColumnElement, case, delete, event, func, insert, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.dml import ReturningUpdate

from service.ml.spec import TrainSpec
from service.search import IN_FLIGHT, next_trials
from service.store.db import begin_write
from service.store.models import (
    EpochMetric,
    Job,
    JobCheckpoint,
    JobStatus,
    Loss,
    RewoundEpoch,
    Study,
    StudyStatus,
    TrainedModel,
    UTCDateTime,
    utcnow,
)
from service.store.queries import get_study, of_dataset, study_trials

log = logging.getLogger(__name__)


class JobNotFound(LookupError):
    """No job has this id."""


class JobConflict(Exception):
    """The job is in a state that doesn't allow this transition (e.g. cancelling a finished job)."""


class LeaseLost(Exception):
    """The worker no longer holds the job (re-queued after a stale heartbeat, or no longer running)."""


@dataclass(frozen=True)
class Lease:
    """What a heartbeat learned: is the job still ours, and has someone asked to cancel it?"""

    alive: bool
    cancel_requested: bool = False

    def __bool__(self) -> bool:
        return self.alive


class ResultLike(Protocol):
    """What finish_job stores (service.ml.train.TrainResult has these)."""

    weights: bytes
    train_accuracy: float
    test_accuracy: float
    validation_accuracy: float | None
    confusion_train: list[list[int]]
    confusion_test: list[list[int]]
    best_epoch: int
    stopped_epoch: int
    predictions: Mapping[str, bytes]  # "train", "test" (the worker's; the API computes a split left out)
    seconds: float


class EpochLike(Protocol):
    """What record_epoch stores (service.ml.train.EpochEnd has these)."""

    epoch: int
    loss: float
    train_accuracy: float
    test_accuracy: float
    seconds: float
    validation_loss: float | None  # None for a job without a validation split
    validation_accuracy: float | None
    sampled: bool | None  # train and test accuracies on samples; None: not said


# --- transitions -------------------------------------------------------------------------------


def enqueue_job(
    session: Session,
    spec: TrainSpec,
    sweep_id: str | None = None,
    now: datetime | None = None,
    reproduces: int | None = None,
    *,
    trial: tuple[int, int] | None = None,
    client: str | None = None,
) -> Job:
    """(nothing) -> queued. Returns the new job with its id; `reproduces` names the model it trains again,
    `trial` (study id, trial number) the study it is a trial of, `client` the address that asked for it."""
    begin_write(session)
    study_id, trial_number = trial or (None, None)
    job = Job(
        name=spec.name,
        spec=spec.model_dump(mode="json"),
        backend=spec.backend,
        status=JobStatus.queued,
        created_at=now or utcnow(),
        sweep_id=sweep_id,
        reproduces=reproduces,
        study_id=study_id,
        trial_number=trial_number,
        client=client,
    )
    session.add(job)
    session.flush()
    return job


def claim_job(
    session: Session, worker_id: str, now: datetime | None = None, skip: Collection[str] = ()
) -> Job | None:
    """queued -> running: a queued job (of a dataset not in `skip`) for `worker_id`, the oldest of the
    client whose last job started longest ago; None when the queue has none.

    One conditional UPDATE ... RETURNING, so no job is handed to two workers: on SQLite the
    transaction begins IMMEDIATE (holds the write lock from the start, see db.begin_write); on
    PostgreSQL the subquery's FOR UPDATE SKIP LOCKED makes concurrent claimers skip the row.
    attempts += 1; started_at is kept from the first claim. Progress recorded after the job's
    checkpoint (a previous attempt's partial epoch) is deleted, so the resumed run re-records it.
    """
    begin_write(session)
    job = session.scalars(_claim_statement(worker_id, now or utcnow(), skip)).one_or_none()
    if job is None:
        return None

    job.epoch, job.step, job.loss = _rewind(session, job.id)
    session.flush()
    return job


def _rewind(session: Session, job_id: int) -> tuple[int, int, float | None]:
    """Delete the progress recorded after the job's checkpoint (a partial epoch, which the run resuming
    from it records again); (epochs done, last step, its loss): its progress as it now stands."""
    done = session.scalar(select(JobCheckpoint.epoch).where(JobCheckpoint.job_id == job_id)) or 0
    session.execute(delete(Loss).where(Loss.job_id == job_id, Loss.epoch > done))
    past = (EpochMetric.job_id == job_id, EpochMetric.epoch > done)
    trained = select(EpochMetric.job_id, EpochMetric.seconds).where(*past)
    session.execute(insert(RewoundEpoch).from_select(["job_id", "seconds"], trained))
    session.execute(delete(EpochMetric).where(*past))
    last = session.execute(
        select(Loss.step, Loss.loss).where(Loss.job_id == job_id).order_by(Loss.step.desc()).limit(1)
    ).first()
    return done, (last.step if last else 0), (last.loss if last else None)


def _back_in_queue(session: Session, job_id: int, now: datetime) -> None:
    """A job just re-queued shows the progress it resumes from, not what its last worker got past it, and
    waits from now."""
    epoch, step, loss = _rewind(session, job_id)
    session.execute(
        update(Job).where(Job.id == job_id).values(epoch=epoch, step=step, loss=loss, requeued_at=now)
    )


TURN_WINDOW = timedelta(days=1)  # a client whose last job started longer ago than this counts as new
NO_CLIENT = "-"  # jobs without a client, as one client (no address reads "-")


def _claim_statement(worker_id: str, now: datetime, skip: Collection[str] = ()) -> ReturningUpdate[Job]:
    # Clients take turns: the oldest job of the client whose last job started longest ago (or none within
    # TURN_WINDOW) goes first, so one client's backlog does not hold another's job back until it has all
    # trained, with one worker as with many. Jobs of no client (the process's own, or older) are one client.
    other = aliased(Job)
    whose = func.coalesce(other.client, NO_CLIENT)
    last_start = (
        select(whose.label("client"), func.max(other.started_at).label("at"))
        .where(other.started_at > literal(now - TURN_WINDOW, UTCDateTime()))  # the index on started_at
        .group_by(whose)
        .subquery()
    )
    oldest = (
        select(Job.id)
        .outerjoin(last_start, last_start.c.client == func.coalesce(Job.client, NO_CLIENT))
        .where(Job.status == JobStatus.queued, *[~of_dataset(dataset) for dataset in skip])
        .order_by(last_start.c.at.asc().nulls_first(), Job.id)
        .limit(1)
        # PostgreSQL, the job's row alone; SQLite renders nothing and relies on BEGIN IMMEDIATE
        .with_for_update(skip_locked=True, of=Job)
        .scalar_subquery()
    )
    return (
        update(Job)
        .where(Job.id == oldest, Job.status == JobStatus.queued)
        .values(
            status=JobStatus.running,
            worker_id=worker_id,
            attempts=Job.attempts + 1,
            started_at=func.coalesce(Job.started_at, literal(now, UTCDateTime())),
            heartbeat_at=now,
            error=None,  # a reason it was given back (release_job) no longer holds
        )
        .returning(Job)
    )


def heartbeat(session: Session, job_id: int, worker_id: str, now: datetime | None = None) -> Lease:
    """running -> running: renew the lease (heartbeat_at = now) if the job is still ours.

    Returns Lease(alive=False) when the job was taken away (the worker must drop it), and
    whether a cancel was requested (the worker should stop and call mark_cancelled).
    A Lease is truthy when alive.
    """
    begin_write(session)
    row = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.worker_id == worker_id, Job.status == JobStatus.running)
        .values(heartbeat_at=now or utcnow())
        .returning(Job.cancel_requested)
    ).first()
    if row is None:
        return Lease(alive=False)
    return Lease(alive=True, cancel_requested=bool(row.cancel_requested))


def record_progress(
    session: Session,
    job_id: int,
    worker_id: str,
    losses: Sequence[tuple[int, int, float]],
    steps: int | None,
    loss_every: int | None = None,
    now: datetime | None = None,
) -> bool:
    """running -> running: store (epoch, step, loss) rows and the job's latest epoch/step/loss, its
    total steps and the interval at which it records losses (when given).

    Non-finite losses (NaN, inf) are skipped: SQLite stores NaN as NULL and JSON can't carry them.
    Also renews the lease, and returns whether a cancel was requested: a worker writing progress
    learns of a cancel at its next write, sooner than at its next heartbeat.
    Raises LeaseLost if the job is no longer ours.
    """
    rows = [
        {"job_id": job_id, "epoch": int(e), "step": int(s), "loss": float(x)}
        for e, s, x in losses
        if math.isfinite(x)
    ]
    values: dict[str, Any] = {"heartbeat_at": now or utcnow()}
    if steps is not None:
        values["steps"] = int(steps)
    if loss_every is not None:
        values["loss_every"] = int(loss_every)
    if rows:
        last = max(rows, key=lambda r: r["step"])
        values.update(epoch=last["epoch"], step=last["step"], loss=last["loss"])
    cancel_requested = _guarded_update(session, job_id, worker_id, values, returning=Job.cancel_requested)
    if rows:
        # A step already stored is kept: a write retried after its commit's answer was lost repeats rows.
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        session.execute(dialect.insert(Loss).on_conflict_do_nothing(index_elements=["job_id", "step"]), rows)
    return bool(cancel_requested)


def record_provenance(
    session: Session, job_id: int, worker_id: str, provenance: dict[str, Any], now: datetime | None = None
) -> None:
    """running -> running: store what trains the job (its worker's Provenance), replacing an earlier
    attempt's. Raises LeaseLost if the job is no longer ours."""
    _guarded_update(session, job_id, worker_id, {"provenance": provenance, "heartbeat_at": now or utcnow()})


def record_epoch(
    session: Session, job_id: int, worker_id: str, metrics: EpochLike, now: datetime | None = None
) -> None:
    """running -> running: store one finished epoch's metrics (replacing a row for that epoch).

    Raises LeaseLost if the job is no longer ours.
    """
    _guarded_update(session, job_id, worker_id, {"heartbeat_at": now or utcnow()})
    session.merge(
        EpochMetric(
            job_id=job_id,
            epoch=int(metrics.epoch),
            loss=float(metrics.loss),
            train_accuracy=float(metrics.train_accuracy),
            test_accuracy=float(metrics.test_accuracy),
            seconds=float(metrics.seconds),
            validation_loss=_float_or_none(metrics.validation_loss),
            validation_accuracy=_float_or_none(metrics.validation_accuracy),
            sampled=metrics.sampled,
        )
    )
    session.flush()


def save_checkpoint(
    session: Session, job_id: int, worker_id: str, epoch: int, state: bytes, now: datetime | None = None
) -> None:
    """running -> running: replace the job's checkpoint (`epoch` = epochs completed).

    Raises LeaseLost if the job is no longer ours.
    """
    now = now or utcnow()
    _guarded_update(session, job_id, worker_id, {"heartbeat_at": now})
    session.merge(JobCheckpoint(job_id=job_id, epoch=int(epoch), state=bytes(state), created_at=now))
    session.flush()


def load_checkpoint(session: Session, job_id: int) -> tuple[int, bytes] | None:
    """(read) The job's latest checkpoint as (epochs completed, state), or None."""
    row = session.execute(
        select(JobCheckpoint.epoch, JobCheckpoint.state).where(JobCheckpoint.job_id == job_id)
    ).first()
    return None if row is None else (row.epoch, row.state)


def finish_job(
    session: Session,
    job_id: int,
    worker_id: str,
    result: ResultLike,
    reproduction: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> TrainedModel | None:
    """running -> succeeded: store the model row and the accuracies (and, for a reproduction, how
    close it came), drop the checkpoint. Returns the model.

    One transaction (the caller's). A cancel the API accepted while the job ran is honoured, however
    late (during the final evaluation, say): the job ends cancelled, no model stored; None.
    Raises LeaseLost if the job is no longer ours.
    """
    now = now or utcnow()
    if _cancel_pending(session, job_id, worker_id):
        mark_cancelled(session, job_id, worker_id, now)
        return None
    values = {
        "status": JobStatus.succeeded,
        "finished_at": now,
        "heartbeat_at": now,
        "train_accuracy": float(result.train_accuracy),
        "test_accuracy": float(result.test_accuracy),
        "reproduction": reproduction,
        "validation_accuracy": _float_or_none(result.validation_accuracy),
    }
    _guarded_update(session, job_id, worker_id, values)
    model = TrainedModel(
        job_id=job_id,
        weights=bytes(result.weights),
        train_accuracy=float(result.train_accuracy),
        test_accuracy=float(result.test_accuracy),
        validation_accuracy=_float_or_none(result.validation_accuracy),
        confusion_train=_int_matrix(result.confusion_train),
        confusion_test=_int_matrix(result.confusion_test),
        best_epoch=int(result.best_epoch),
        stopped_epoch=int(result.stopped_epoch),
        predictions_train=result.predictions.get("train"),
        predictions_test=result.predictions.get("test"),
        seconds=float(result.seconds),
        created_at=now,
    )
    session.add(model)
    session.execute(delete(JobCheckpoint).where(JobCheckpoint.job_id == job_id))
    session.flush()
    _ended(session, job_id, now)
    return model


def fail_job(session: Session, job_id: int, worker_id: str, error: str, now: datetime | None = None) -> None:
    """running -> failed, with `error` (a message for people, not a traceback); drops the checkpoint.

    Raises LeaseLost if the job is no longer ours.
    """
    _end_held(session, job_id, worker_id, JobStatus.failed, now or utcnow(), error=error)


def prune_job(session: Session, job_id: int, worker_id: str, now: datetime | None = None) -> None:
    """running -> pruned: its study's pruner stopped it after an epoch; its curves are kept, the
    checkpoint dropped, no model stored.

    Raises LeaseLost if the job is no longer ours.
    """
    _end_held(session, job_id, worker_id, JobStatus.pruned, now or utcnow())


def cancel_job(session: Session, job_id: int, now: datetime | None = None) -> Job:
    """queued -> cancelled at once; running -> running with cancel_requested (its worker stops
    at its next progress write or heartbeat and calls mark_cancelled; asking twice is fine).

    Raises JobNotFound for an unknown id, JobConflict for a job already succeeded, failed or
    cancelled. Returns the job as it now is.
    """
    begin_write(session)
    now = now or utcnow()
    job = session.scalars(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.queued)
        .values(status=JobStatus.cancelled, cancel_requested=True, finished_at=now)
        .returning(Job)
    ).one_or_none()
    if job is not None:
        drop_checkpoints(session, Job.id == job_id)
        _ended(session, job_id, now)
    else:
        job = session.scalars(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.running)
            .values(cancel_requested=True)
            .returning(Job)
        ).one_or_none()
    if job is not None:
        return job
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    if status is None:
        raise JobNotFound(f"job {job_id} not found")
    raise JobConflict(f"job {job_id} is already {status}")


def cancel_sweep(session: Session, sweep_id: str, now: datetime | None = None) -> tuple[int, int]:
    """Every job of the sweep still to end, as cancel_job does one: queued -> cancelled, running ->
    cancel_requested. Its ended jobs keep their results. Returns (cancelled, asked to stop).

    Raises JobNotFound when no job has this sweep id, JobConflict when every one has ended.
    """
    begin_write(session)
    now = now or utcnow()
    of_sweep = Job.sweep_id == sweep_id
    queued = session.execute(
        update(Job)
        .where(of_sweep, Job.status == JobStatus.queued)
        .values(status=JobStatus.cancelled, cancel_requested=True, finished_at=now)
    )
    running = session.execute(
        update(Job).where(of_sweep, Job.status == JobStatus.running).values(cancel_requested=True)
    )
    cancelled, asked = queued.rowcount, running.rowcount  # type: ignore[attr-defined]
    if cancelled or asked:
        drop_checkpoints(session, of_sweep)
        return cancelled, asked
    if session.scalar(select(func.count()).where(of_sweep)) == 0:
        raise JobNotFound(f"sweep {sweep_id} not found")
    raise JobConflict(f"every job of sweep {sweep_id} has ended")


def mark_cancelled(session: Session, job_id: int, worker_id: str, now: datetime | None = None) -> None:
    """running -> cancelled, by the worker that stopped it; drops the checkpoint.

    Raises LeaseLost if the job is no longer ours.
    """
    _end_held(session, job_id, worker_id, JobStatus.cancelled, now or utcnow())


def release_job(
    session: Session, job_id: int, worker_id: str, now: datetime | None = None, reason: str | None = None
) -> JobStatus:
    """running -> queued, on a graceful worker shutdown, or for a worker whose machine lacks its data,
    `reason` then saying so in the queued job's `error` until a claim clears it (or -> cancelled if a
    cancel is pending).

    The checkpoint is kept, so the next claim resumes from the last finished epoch. attempts
    goes back down by one: neither is a failed attempt, so it never counts towards
    MLPLAB_MAX_ATTEMPTS. Returns the new status. Raises LeaseLost if the job is no longer ours.
    """
    now = now or utcnow()
    values = {
        "status": case((Job.cancel_requested, JobStatus.cancelled), else_=JobStatus.queued),
        "finished_at": case((Job.cancel_requested, literal(now, UTCDateTime())), else_=None),
        "worker_id": None,
        "heartbeat_at": None,
        "attempts": case((Job.attempts > 0, Job.attempts - 1), else_=0),
        **({"error": reason} if reason is not None else {}),
    }
    status = _guarded_update(session, job_id, worker_id, values, returning=Job.status)
    if status == JobStatus.cancelled:
        session.execute(delete(JobCheckpoint).where(JobCheckpoint.job_id == job_id))
        _ended(session, job_id, now)
    else:
        _back_in_queue(session, job_id, now)
    return JobStatus(status)


def retry_decision(attempts: int, max_attempts: int) -> Literal["requeue", "fail"]:
    """What to do with a job whose worker vanished after `attempts` claims."""
    return "fail" if attempts >= max_attempts else "requeue"


def requeue_stalled(
    session: Session, now: datetime | None, lease_seconds: float, max_attempts: int
) -> list[int]:
    """running -> queued for jobs whose heartbeat is older than `lease_seconds` (their worker
    died or hung), or running -> failed once they have used `max_attempts` claims (see
    retry_decision), or running -> cancelled when a cancel was pending. A re-queued trial is still
    in flight: its study asks for nothing new.

    Returns the ids of the stalled jobs it handled, whatever became of them.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=lease_seconds)
    stale = (Job.status == JobStatus.running, or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff))
    begin_write(session)
    rows = session.execute(
        select(Job.id, Job.attempts, Job.cancel_requested, Job.worker_id)
        .where(*stale)
        .order_by(Job.id)
        .with_for_update(skip_locked=True)
    ).all()
    handled: list[int] = []
    said: list[tuple[Any, ...]] = []
    for row in rows:
        values: dict[str, Any]
        if row.cancel_requested:
            values = {"status": JobStatus.cancelled, "finished_at": now}
            outcome = "cancelled (cancel was pending)"
        elif retry_decision(row.attempts, max_attempts) == "requeue":
            values = {"status": JobStatus.queued, "worker_id": None, "heartbeat_at": None}
            outcome = "re-queued"
        else:
            error = (
                f"worker lost {row.attempts} times; gave up after MLPLAB_MAX_ATTEMPTS={max_attempts} attempts"
            )
            values = {"status": JobStatus.failed, "error": error, "finished_at": now}
            outcome = "failed"
        changed = session.execute(
            update(Job).where(Job.id == row.id, *stale).values(**values).returning(Job.id)
        )
        if changed.first() is None:
            continue  # its worker renewed the lease meanwhile (PostgreSQL only; SQLite holds the lock)
        if values["status"] != JobStatus.queued:
            session.execute(delete(JobCheckpoint).where(JobCheckpoint.job_id == row.id))
            _ended(session, row.id, now)
        else:
            _back_in_queue(session, row.id, now)
        said.append((row.id, row.worker_id, row.attempts, max_attempts, outcome))
        handled.append(row.id)
    if said:  # once it is so: on a full disk the commit failed, and "re-queued" was logged every second

        def tell(_: Session) -> None:
            for args in said:
                log.warning("job %d: worker %s stopped renewing its lease (attempt %d of %d); %s", *args)

        event.listen(session, "after_commit", tell, once=True)
    return handled


# --- studies -----------------------------------------------------------------------------------


def lock_study(session: Session, study_id: int) -> Study | None:
    """The study's row, FOR UPDATE on PostgreSQL, read afresh: this session may hold it as it was
    before another transaction committed (a cancel, an extension), and would otherwise keep that."""
    query = select(Study).where(Study.id == study_id).with_for_update()
    return session.scalars(query.execution_options(populate_existing=True)).one_or_none()


def advance_study(session: Session, study_id: int, now: datetime | None = None) -> list[Job]:
    """A running study, after a trial was created or ended: queue the trials its sampler asks for now
    (up to `parallelism` in flight, `trials` in all), or finish it when none is left in flight.

    Call it inside the transaction that changed the trials (it takes the write lock, and the
    study's row FOR UPDATE on PostgreSQL, so two ends can't both number the same trial). A study
    not running asks for nothing. Returns the queued jobs.
    """
    begin_write(session)
    now = now or utcnow()
    study = lock_study(session, study_id)
    if study is None or study.status != StudyStatus.running:
        return []
    config, records = study_trials(session, study)
    queued: list[Job] = []
    try:
        for params in next_trials(config, records):
            spec = TrainSpec.read_back(config.base | params)  # a study stored by an earlier version too
            trial = (study.id, len(records) + len(queued))
            queued.append(enqueue_job(session, spec, now=now, trial=trial, client=study.client))
    except (ValidationError, ValueError) as exc:  # check_study lets none through; never lose the end
        log.error("study %d: cannot queue trial %d (%s); it asks for no more", study.id, len(records), exc)
        study.trials = len(records) + len(queued)
    if not queued and not any(t.status in IN_FLIGHT for t in records) and len(records) >= study.trials:
        study.status, study.finished_at = StudyStatus.finished, now
    session.flush()
    return queued


def foresee_end(session: Session, job_id: int, status: JobStatus, value: float | None = None) -> None:
    """Ask, before the write transaction that ends trial `job_id` with `status` (and, succeeded, its final
    validation accuracy `value`), what its study will decide then. The sampler's asks take tens of
    milliseconds each, up to ASKS of them; remembered (next_trials), they are a lookup under the write
    lock. Only a shortcut: if anything else changed the study meanwhile, the end decides afresh."""
    job = session.get(Job, job_id)
    study = get_study(session, job.study_id) if job is not None and job.study_id is not None else None
    if job is None or study is None or study.status != StudyStatus.running:
        return
    config, records = study_trials(session, study)
    outcome = [
        replace(r, status=status, value=value if status == JobStatus.succeeded else None)
        if r.number == job.trial_number
        else r
        for r in records
    ]
    next_trials(config, outcome)


def foresee_extend(session: Session, study_id: int, more: int) -> None:
    """Ask, before the write transaction that extends study `study_id` by `more` trials, for the trials
    it will queue (as foresee_end). Ends its read transaction: the caller's begin_write starts a fresh
    one, which SQLite could not upgrade from a read."""
    study = get_study(session, study_id)
    if study is not None and study.status != StudyStatus.cancelled:  # extend_study refuses those
        config, records = study_trials(session, study)
        with contextlib.suppress(ValueError):  # a grid without the points: extend_study's 422 says so
            next_trials(config.model_copy(update={"trials": study.trials + more}), records)
    session.rollback()


def _end_held(
    session: Session, job_id: int, worker_id: str, status: JobStatus, now: datetime, **more: Any
) -> None:
    """running -> `status` (no model), by the worker holding the job: drop its checkpoint, advance its study."""
    values = {"status": status, "finished_at": now, "heartbeat_at": now, **more}
    _guarded_update(session, job_id, worker_id, values)
    session.execute(delete(JobCheckpoint).where(JobCheckpoint.job_id == job_id))
    _ended(session, job_id, now)


def drop_checkpoints(session: Session, *where: ColumnElement[bool]) -> None:
    """Delete the checkpoints of the ended jobs among those `where` selects: a queued job cancelled still
    held the one its last worker left (a SIGTERM's hand-back, a stalled lease's re-queue)."""
    ended = select(Job.id).where(*where, Job.status.not_in(IN_FLIGHT))
    session.execute(delete(JobCheckpoint).where(JobCheckpoint.job_id.in_(ended)))


def _ended(session: Session, job_id: int, now: datetime) -> None:
    """The job has just reached an end: advance its study, if it is a trial."""
    study_id = session.scalar(select(Job.study_id).where(Job.id == job_id))
    if study_id is not None:
        advance_study(session, study_id, now)


# --- helpers -----------------------------------------------------------------------------------


def _cancel_pending(session: Session, job_id: int, worker_id: str) -> bool:
    """Whether a cancel waits for the job `worker_id` holds; under the write lock (the row's, on
    PostgreSQL), so no cancel lands between this answer and the caller's end."""
    begin_write(session)
    query = select(Job.cancel_requested).where(
        Job.id == job_id, Job.worker_id == worker_id, Job.status == JobStatus.running
    )
    return bool(session.scalar(query.with_for_update()))


def _guarded_update(
    session: Session, job_id: int, worker_id: str, values: dict[str, Any], returning: Any = Job.id
) -> Any:
    """UPDATE the job only if `worker_id` holds it and it is running; LeaseLost otherwise."""
    begin_write(session)
    row = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.worker_id == worker_id, Job.status == JobStatus.running)
        .values(**values)
        .returning(returning)
    ).first()
    if row is None:
        now = session.execute(select(Job.status, Job.worker_id).where(Job.id == job_id)).first()
        state = "does not exist" if now is None else f"is {now.status} (worker {now.worker_id})"
        raise LeaseLost(f"job {job_id} is no longer held by worker {worker_id}: it {state}")
    return row[0]


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)


def _int_matrix(matrix: Any) -> list[list[int]]:
    return [[int(x) for x in row] for row in matrix]
