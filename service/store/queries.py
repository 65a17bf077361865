"""The reads the API and the tools make: jobs, their records, sweeps and models.

Each function takes the caller's session and writes nothing; the transitions are in
``service.store.jobs``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal, cast, get_args

from sqlalchemy import ColumnElement, Connection, Row, SQLColumnExpression, bindparam, func, literal, select
from sqlalchemy.orm import Session, defer, joinedload

from service.ml.spec import TrainSpec
from service.store.models import EpochMetric, Job, JobStatus, Loss, TrainedModel, UTCDateTime, utcnow

# The id and step columns are `Integer`: 32-bit on PostgreSQL, where a larger bound parameter fails
# with "integer out of range" (SQLAlchemy casts it ::INTEGER); on SQLite past 64 bits binding raises
# OverflowError. No row has such an id or step, so lookups answer "none" for it, and offsets and
# step bounds saturate.
MAX_INTEGER = 2**31 - 1


def _storable(value: int) -> bool:
    return -MAX_INTEGER - 1 <= value <= MAX_INTEGER


def get_job(session: Session, job_id: int) -> Job | None:
    """The job, or None."""
    return session.get(Job, job_id) if _storable(job_id) else None


# Built once: SQLAlchemy caches its compiled form, and building it costs more than running it.
_JOB_ROW = select(*Job.__table__.columns).where(Job.id == bindparam("job_id"))


def get_job_row(connection: Connection | Session, job_id: int) -> Row[Any] | None:
    """The job's columns as a plain row, or None: the polled read, with no ORM object to build."""
    if not _storable(job_id):
        return None
    return connection.execute(_JOB_ROW, {"job_id": job_id}).first()


def job_spec(job: Job | Row[Any]) -> TrainSpec:
    """The job's TrainSpec, parsed back from its stored JSON (TrainSpec.from_stored: older rows too)."""
    return TrainSpec.from_stored(job.spec)


# GET /jobs?sort=: a column, descending with a leading "-"; jobs without a value (no accuracy yet, never
# started) come last either way, and ties go by id in the same direction.
JobSort = Literal[
    "id",
    "-id",
    "created_at",
    "-created_at",
    "validation_accuracy",
    "-validation_accuracy",
    "test_accuracy",
    "-test_accuracy",
    "duration",
    "-duration",
    "status",
    "-status",
]


def _duration(session: Session, now: datetime) -> ColumnElement[float]:
    """Seconds from a job's start to its end (to `now` while it runs); NULL before it starts."""
    end = func.coalesce(Job.finished_at, literal(now, UTCDateTime()))
    if session.get_bind().dialect.name == "sqlite":  # timestamps are text there
        return (func.julianday(end) - func.julianday(Job.started_at)) * 86400.0
    return cast(ColumnElement[float], func.extract("epoch", end - Job.started_at))


def _job_order(session: Session, sort: JobSort, now: datetime) -> list[SQLColumnExpression[Any]]:
    key = sort.removeprefix("-")
    descending = sort.startswith("-")
    tie = Job.id.desc() if descending else Job.id.asc()
    if key == "id":
        return [tie]
    column: SQLColumnExpression[Any] = (
        _duration(session, now) if key == "duration" else getattr(Job, key)  # a JobSort names a column
    )
    return [(column.desc() if descending else column.asc()).nulls_last(), tie]


def list_jobs(
    session: Session,
    status: JobStatus | str | None = None,
    backend: str | None = None,
    limit: int = 50,
    offset: int = 0,
    sweep_id: str | None = None,
    sort: JobSort = "-id",
    now: datetime | None = None,
) -> tuple[list[Row[Any]], int]:
    """A page of jobs in `sort` order (newest first by default), as rows (no ORM objects: the cheap read
    for lists), and how many match the filters in all.

    The page's ids are sorted first, on their own (an index covers them for most sorts), and only those
    rows read: sorting whole rows, spec and error included, costs several times more.
    """
    filters = []
    if status is not None:
        filters.append(Job.status == JobStatus(status))
    if backend is not None:
        filters.append(Job.backend == backend)
    if sweep_id is not None:
        filters.append(Job.sweep_id == sweep_id)
    count = session.scalar(select(func.count()).select_from(Job).where(*filters)) or 0
    order = _job_order(session, sort, now or utcnow())
    page = select(Job.id).where(*filters).order_by(*order).limit(limit).offset(min(offset, MAX_INTEGER))
    ids = page.subquery()
    rows = session.execute(
        select(*Job.__table__.columns).join_from(Job, ids, Job.id == ids.c.id).order_by(*order)
    ).all()
    return list(rows), count


def list_sweep_ids(session: Session, limit: int = 20, offset: int = 0) -> tuple[list[str], int]:
    """Sweep ids, newest first (by their newest job), and how many sweeps there are in all."""
    query = (
        select(Job.sweep_id)
        .where(Job.sweep_id.is_not(None))
        .group_by(Job.sweep_id)
        .order_by(func.max(Job.id).desc())
        .limit(limit)
        .offset(min(offset, MAX_INTEGER))
    )
    count = session.scalar(select(func.count(func.distinct(Job.sweep_id)))) or 0
    return list(session.scalars(query)), count


def list_sweep_jobs(session: Session, sweep_ids: Sequence[str]) -> dict[str, list[Row[Any]]]:
    """The jobs of each of these sweeps, as rows in creation order (sweeps without jobs are left out)."""
    rows = session.execute(
        select(*Job.__table__.columns).where(Job.sweep_id.in_(sweep_ids)).order_by(Job.sweep_id, Job.id)
    )
    jobs: dict[str, list[Row[Any]]] = {}
    for row in rows:
        jobs.setdefault(row.sweep_id, []).append(row)
    return jobs


def count_queued(session: Session) -> int:
    """How many jobs are waiting (the API refuses submissions past MLPLAB_MAX_QUEUED)."""
    return session.scalar(select(func.count()).select_from(Job).where(Job.status == JobStatus.queued)) or 0


def get_losses(session: Session, job_id: int, after_step: int = 0) -> list[Loss]:
    """The job's recorded losses in step order (only those after `after_step`, for polling)."""
    query = (
        select(Loss)
        .where(Loss.job_id == job_id, Loss.step > min(after_step, MAX_INTEGER))
        .order_by(Loss.step)
    )
    return list(session.scalars(query))


def get_epochs(session: Session, job_id: int) -> list[EpochMetric]:
    """The job's finished epochs in order."""
    return list(
        session.scalars(select(EpochMetric).where(EpochMetric.job_id == job_id).order_by(EpochMetric.epoch))
    )


def get_model(session: Session, job_id: int) -> TrainedModel | None:
    """The trained model of a succeeded job with `.job` loaded; or None.

    Its weights (megabytes) are read only when `.weights` is, by a second query in the same session;
    its predictions likewise (get_predictions reads one split's alone).
    """
    if not _storable(job_id):
        return None
    return session.scalar(
        select(TrainedModel)
        .where(TrainedModel.job_id == job_id)
        .options(
            joinedload(TrainedModel.job),
            defer(TrainedModel.weights),
            defer(TrainedModel.predictions_train),
            defer(TrainedModel.predictions_test),
        )
    )


# The orders of GET /models; the first is the default. validation_accuracy ranks the models that have a
# validation split by it, then those without one by test accuracy (service.selection.rank_key).
ModelSort = Literal["validation_accuracy", "test_accuracy", "created_at"]
MODEL_SORTS: tuple[ModelSort, ...] = get_args(ModelSort)

_MODEL_ORDERS: dict[str, tuple[Any, ...]] = {
    "validation_accuracy": (
        TrainedModel.validation_accuracy.is_(None),
        TrainedModel.validation_accuracy.desc(),
        TrainedModel.test_accuracy.desc(),
    ),
    "test_accuracy": (TrainedModel.test_accuracy.desc(),),
    "created_at": (TrainedModel.created_at.desc(),),
}


def list_models(
    session: Session,
    sort: ModelSort = "validation_accuracy",
    limit: int | None = None,
    offset: int = 0,
) -> tuple[list[TrainedModel], int]:
    """A page of trained models in `sort`'s order (newest first among equals), each with `.job` loaded,
    and how many there are in all.

    Neither the weights nor the predictions are loaded (reading them raises); get_model loads one
    model's weights, get_predictions its predictions.
    """
    if sort not in _MODEL_ORDERS:
        raise ValueError(f"sort must be one of {', '.join(MODEL_SORTS)}, not {sort!r}")
    query = (
        select(TrainedModel)
        .options(
            joinedload(TrainedModel.job),
            defer(TrainedModel.weights, raiseload=True),
            defer(TrainedModel.predictions_train, raiseload=True),
            defer(TrainedModel.predictions_test, raiseload=True),
        )
        .order_by(*_MODEL_ORDERS[sort], TrainedModel.job_id.desc())
        .limit(limit)
        .offset(min(offset, MAX_INTEGER))
    )
    count = session.scalar(select(func.count()).select_from(TrainedModel)) or 0
    return list(session.scalars(query)), count


def count_models(session: Session) -> tuple[int, int]:
    """How many trained models there are, and how many of them have a validation accuracy."""
    row = session.execute(select(func.count(), func.count(TrainedModel.validation_accuracy))).one()
    return int(row[0]), int(row[1])


def get_predictions(session: Session, job_id: int, split: Literal["train", "test"]) -> bytes | None:
    """A model's stored predictions of a split (service.ml.evaluation.encode_predictions), or None."""
    column = TrainedModel.predictions_train if split == "train" else TrainedModel.predictions_test
    if not _storable(job_id):
        return None
    return session.scalar(select(column).where(TrainedModel.job_id == job_id))


def training_seconds(session: Session, job_ids: Iterable[int]) -> dict[int, float]:
    """The training time of each of these jobs that is a trained model."""
    ids = [job_id for job_id in job_ids if _storable(job_id)]
    rows = session.execute(
        select(TrainedModel.job_id, TrainedModel.seconds).where(TrainedModel.job_id.in_(ids))
    )
    return {row.job_id: row.seconds for row in rows}
