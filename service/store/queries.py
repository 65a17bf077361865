"""The reads the API and the tools make: jobs, their records, sweeps, studies and models.

Each function takes the caller's session and writes nothing; the transitions are in
``service.store.jobs``.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple, TypeVar, cast, get_args

from sqlalchemy import (
    ColumnElement,
    Connection,
    LargeBinary,
    Row,
    Select,
    SQLColumnExpression,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session, aliased, defer, joinedload

from service.ml.spec import SplitName, TrainSpec
from service.search import StudyCreate, TrialRecord
from service.store.models import (
    RANK_SCORE,
    Alias,
    AliasEvent,
    EpochMetric,
    Job,
    JobStatus,
    Loss,
    RewoundEpoch,
    Study,
    TrainedModel,
    UTCDateTime,
    Worker,
    utcnow,
)

# The id and step columns are `Integer`: 32-bit on PostgreSQL, where a larger bound parameter fails
# with "integer out of range" (SQLAlchemy casts it ::INTEGER); on SQLite past 64 bits binding raises
# OverflowError. No row has such an id or step, so lookups answer "none" for it, and offsets and
# step bounds saturate.
MAX_INTEGER = 2**31 - 1


def _storable(value: int) -> bool:
    return -MAX_INTEGER - 1 <= value <= MAX_INTEGER


Q = TypeVar("Q", bound=Select[Any])


def _page(query: Q, limit: int | None, offset: int) -> Q:
    """One page of a listing; an offset past the database's integers is past every row anyway."""
    return query.limit(limit).offset(min(offset, MAX_INTEGER))


def get_job(session: Session, job_id: int) -> Job | None:
    """The job, or None."""
    return session.get(Job, job_id) if _storable(job_id) else None


def get_jobs_by_id(session: Session, job_ids: Iterable[int]) -> dict[int, Job]:
    """The jobs that exist among `job_ids`, by id."""
    wanted = {job_id for job_id in job_ids if _storable(job_id)}
    return {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(wanted)))} if wanted else {}


# Built once: SQLAlchemy caches its compiled form, and building it costs more than running it.
_JOB_ROW = select(*Job.__table__.columns).where(Job.id == bindparam("job_id"))


def job_row_read(job_id: int) -> tuple[Select[Any], dict[str, int]] | None:
    """The polled read (the job's columns as a plain row, no ORM object to build): its statement and
    parameters, or None for an id no row can have."""
    return (_JOB_ROW, {"job_id": job_id}) if _storable(job_id) else None


def get_job_row(connection: Connection | Session, job_id: int) -> Row[Any] | None:
    """The job's columns as a plain row, or None."""
    read = job_row_read(job_id)
    return None if read is None else connection.execute(*read).first()


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
    count = count_jobs(session, *filters)
    order = _job_order(session, sort, now or utcnow())
    page = _page(select(Job.id).where(*filters).order_by(*order), limit, offset)
    ids = page.subquery()
    rows = session.execute(
        select(*Job.__table__.columns).join_from(Job, ids, Job.id == ids.c.id).order_by(*order)
    ).all()
    return list(rows), count


def list_sweep_ids(session: Session, limit: int = 20, offset: int = 0) -> tuple[list[str], int]:
    """Sweep ids, newest first (by their newest job), and how many sweeps there are in all."""
    query = _page(
        select(Job.sweep_id)
        .where(Job.sweep_id.is_not(None))
        .group_by(Job.sweep_id)
        .order_by(func.max(Job.id).desc()),
        limit,
        offset,
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


def count_queued(session: Session, client: str | None = None) -> int:
    """How many jobs are waiting (the API refuses submissions past MLPLAB_MAX_QUEUED); of `client`'s alone
    when given (past MLPLAB_MAX_QUEUED_PER_CLIENT)."""
    mine = () if client is None else (Job.client == client,)
    return count_jobs(session, Job.status == JobStatus.queued, *mine)


def get_losses(session: Session, job_id: int, after_step: int = 0, limit: int | None = None) -> list[Loss]:
    """The job's recorded losses in step order: those after `after_step`, at most `limit` of them."""
    query = (
        select(Loss)
        .where(Loss.job_id == job_id, Loss.step > min(after_step, MAX_INTEGER))
        .order_by(Loss.step)
        .limit(limit)
    )
    return list(session.scalars(query))


class CurveRow(NamedTuple):
    epoch: int
    step: int
    loss: float


def get_loss_curve(
    session: Session, job_id: int, max_points: int, after_step: int = 0
) -> tuple[list[CurveRow], int]:
    """The job's losses after `after_step` as at most `max_points` points, and how many losses they summarise.

    Up to max_points losses come back as recorded. Of more, the first and the last are kept as recorded
    (where the curve starts, near ln 10, and where it ends) and those between are cut, by step, into
    max_points - 2 buckets of equal width, each drawn as the mean of its losses at its last step. The
    database does the averaging: memory does not grow with the rows.
    """
    after = min(after_step, MAX_INTEGER)
    mine = (Loss.job_id == job_id, Loss.step > after)
    count, last = session.execute(select(func.count(), func.max(Loss.step)).where(*mine)).one()
    if count <= max_points:
        return [CurveRow(*row) for row in session.execute(
            select(Loss.epoch, Loss.step, Loss.loss).where(*mine).order_by(Loss.step)
        )], count  # fmt: skip
    kept = select(Loss.epoch, Loss.step, Loss.loss).where(*mine)
    start = CurveRow(*session.execute(kept.order_by(Loss.step).limit(1)).one())
    width = max(math.ceil((last - start.step - 1) / max(max_points - 2, 1)), 1)
    bucket = (Loss.step - start.step - 1) // width
    means = session.execute(
        select(func.max(Loss.epoch), func.max(Loss.step), func.avg(Loss.loss))
        .where(*mine, Loss.step > start.step, Loss.step < last)
        .group_by(bucket)
        .order_by(bucket)
    )
    final = CurveRow(*session.execute(kept.where(Loss.step == last)).one())
    return [start, *(CurveRow(int(e), int(s), float(x)) for e, s, x in means), final], count


def get_epochs(session: Session, job_id: int) -> list[EpochMetric]:
    """The job's finished epochs in order."""
    return list(
        session.scalars(select(EpochMetric).where(EpochMetric.job_id == job_id).order_by(EpochMetric.epoch))
    )


def get_model(session: Session, job_id: int) -> TrainedModel | None:
    """The trained model of a succeeded job with `.job` loaded; or None.

    Its weights (megabytes) are read only when `.weights` is, by a second query in the same session; its
    predictions likewise (get_predictions reads one split's alone).
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


def weights_size(session: Session, job_id: int) -> int:
    """The length in bytes of a stored model's weights (read without them)."""
    size = session.scalar(select(func.length(TrainedModel.weights)).where(TrainedModel.job_id == job_id))
    return int(size or 0)


def weights_slice(session: Session, job_id: int, start: int, size: int) -> bytes:
    """`size` bytes of a stored model's weights from `start` (fewer at the end), the rest left unread."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        # SQLite's substr() reads the whole value for any slice: its incremental blob I/O reads the slice.
        sqlite = cast(sqlite3.Connection, connection.connection.driver_connection)
        with sqlite.blobopen(
            TrainedModel.__tablename__, TrainedModel.weights.key, job_id, readonly=True
        ) as blob:
            blob.seek(start)
            return bytes(blob.read(size))
    piece = func.substr(TrainedModel.weights, start + 1, size, type_=LargeBinary)
    return bytes(session.scalar(select(piece).where(TrainedModel.job_id == job_id)) or b"")


# How models rank, best first: those with a validation split by its accuracy, then those without one by
# test accuracy, the newer of two equal ones first (one backward scan of the index on RANK_SCORE);
# rank_key in service.selection is the same order in Python.
BEST_FIRST = (RANK_SCORE.desc(), TrainedModel.job_id.desc())


DEFAULT_DATASET: str = TrainSpec.model_fields["dataset"].default  # a spec stored before datasets had a name


def trained_datasets(session: Session) -> list[str]:
    """The datasets the trained models learned."""
    name = Job.spec["dataset"].as_string()
    found = session.scalars(select(name).join(TrainedModel, TrainedModel.job_id == Job.id).distinct())
    return sorted({value or DEFAULT_DATASET for value in found})


def of_dataset(dataset: str) -> ColumnElement[bool]:
    """The jobs that learn `dataset` (never NULL, so that its negation is the jobs of the others)."""
    return func.coalesce(Job.spec["dataset"].as_string(), DEFAULT_DATASET) == dataset


def best_model_id(session: Session, *where: ColumnElement[bool]) -> int | None:
    """The best (BEST_FIRST) trained model among the jobs matching `where`, e.g. Job.sweep_id == "3f9c..."."""
    query = select(TrainedModel.job_id).join(TrainedModel.job).where(*where).order_by(*BEST_FIRST).limit(1)
    return session.scalar(query)


# The orders of GET /models; the first (BEST_FIRST) is the default.
ModelSort = Literal["validation_accuracy", "test_accuracy", "created_at"]
MODEL_SORTS: tuple[ModelSort, ...] = get_args(ModelSort)

_MODEL_ORDERS: dict[str, tuple[Any, ...]] = {
    "validation_accuracy": BEST_FIRST,
    "test_accuracy": (TrainedModel.test_accuracy.desc(), TrainedModel.job_id.desc()),
    "created_at": (TrainedModel.created_at.desc(), TrainedModel.job_id.desc()),
}


def list_models(
    session: Session,
    sort: ModelSort = "validation_accuracy",
    limit: int | None = None,
    offset: int = 0,
    where: Sequence[ColumnElement[bool]] = (),
) -> list[TrainedModel]:
    """Trained models in `sort`'s order (newest first among equals), each with `.job` loaded.

    Neither the weights, the predictions, the confusion matrices nor the job's provenance are loaded
    (reading them raises): a page shows none of them. get_model loads one model whole,
    get_predictions its predictions.
    """
    if sort not in _MODEL_ORDERS:
        raise ValueError(f"sort must be one of {', '.join(MODEL_SORTS)}, not {sort!r}")
    query = _page(
        select(TrainedModel)
        .options(
            joinedload(TrainedModel.job).defer(Job.provenance, raiseload=True),
            defer(TrainedModel.confusion_train, raiseload=True),
            defer(TrainedModel.confusion_test, raiseload=True),
            defer(TrainedModel.weights, raiseload=True),
            defer(TrainedModel.predictions_train, raiseload=True),
            defer(TrainedModel.predictions_test, raiseload=True),
        )
        .where(*[TrainedModel.job_id.in_(select(Job.id).where(*where))] if where else [])
        .order_by(*_MODEL_ORDERS[sort]),
        limit,
        offset,
    )
    return list(session.scalars(query))


def count_jobs(session: Session, *where: ColumnElement[bool]) -> int:
    """How many jobs match `where`."""
    return int(session.scalar(select(func.count()).select_from(Job).where(*where)) or 0)


def count_models(session: Session, *where: ColumnElement[bool]) -> tuple[int, int]:
    """How many trained models there are (among the jobs matching `where`), and how many of them have a
    validation accuracy."""
    query = select(func.count(), func.count(TrainedModel.validation_accuracy)).select_from(TrainedModel)
    if where:
        query = query.join(TrainedModel.job).where(*where)
    row = session.execute(query).one()
    return int(row[0]), int(row[1])


def get_predictions(session: Session, job_id: int, split: SplitName) -> bytes | None:
    """A model's stored predictions of a split (service.ml.evaluation.encode_predictions), or None."""
    column = TrainedModel.predictions_train if split == "train" else TrainedModel.predictions_test
    if not _storable(job_id):
        return None
    return session.scalar(select(column).where(TrainedModel.job_id == job_id))


def training_seconds(session: Session, sweep_ids: Sequence[str]) -> dict[int, float]:
    """The training time of each job of these sweeps that is a trained model, by job id."""
    rows = session.execute(
        select(TrainedModel.job_id, TrainedModel.seconds)
        .join(Job, Job.id == TrainedModel.job_id)
        .where(Job.sweep_id.in_(sweep_ids))
    )
    return {row.job_id: row.seconds for row in rows}


# --- aliases ------------------------------------------------------------------------------------


def alias_target(session: Session, name: str) -> int | None:
    """The id of the model the alias names now, or None: what a request naming the alias uses."""
    return session.scalar(select(Alias.model_id).where(Alias.name == name))


def get_alias(session: Session, name: str) -> Alias | None:
    return session.get(Alias, name)


def list_aliases(session: Session, limit: int, offset: int = 0) -> tuple[list[Alias], int]:
    """A page of the aliases, by name, and how many there are in all."""
    page = session.scalars(_page(select(Alias).order_by(Alias.name), limit, offset))
    return list(page), session.scalar(select(func.count()).select_from(Alias)) or 0


def alias_history(
    session: Session, name: str, limit: int | None = None, offset: int = 0
) -> tuple[list[AliasEvent], int]:
    """A page of the alias's changes, newest first (deletions and earlier lives of the name included),
    and how many there are in all."""
    where = AliasEvent.alias == name
    query = _page(select(AliasEvent).where(where).order_by(AliasEvent.id.desc()), limit, offset)
    total = session.scalar(select(func.count()).select_from(AliasEvent).where(where)) or 0
    return list(session.scalars(query)), total


def alias_changes(session: Session, aliases: Sequence[Alias]) -> dict[str, tuple[str | None, int | None]]:
    """Each alias's latest change: what it said (its detail), and the model a rollback would name (None:
    there is none); by alias name."""
    back = aliased(AliasEvent)
    query = (
        select(Alias.name, AliasEvent.detail, back.to_model_id)
        .join(AliasEvent, AliasEvent.id == Alias.event_id)
        .outerjoin(back, back.id == AliasEvent.rollback_to_id)
        .where(Alias.name.in_([alias.name for alias in aliases]))
    )
    return {name: (detail, model_id) for name, detail, model_id in session.execute(query)}


def aliases_by_model(session: Session, model_ids: Sequence[int] | None = None) -> dict[int, list[str]]:
    """The aliases naming each model (of `model_ids`, or all), by name; models without one are absent."""
    query = select(Alias.model_id, Alias.name).order_by(Alias.name)
    if model_ids is not None:
        query = query.where(Alias.model_id.in_([i for i in model_ids if _storable(i)]))
    named: dict[int, list[str]] = {}
    for model_id, name in session.execute(query):
        named.setdefault(model_id, []).append(name)
    return named


# --- workers ------------------------------------------------------------------------------------


def worker_is_live(lease_seconds: float, now: datetime | None = None) -> ColumnElement[bool]:
    """A worker is live, idle or training, while its heartbeat is younger than MLPLAB_LEASE_SECONDS."""
    return Worker.heartbeat_at >= (now or utcnow()) - timedelta(seconds=lease_seconds)


def dataset_held(session: Session, dataset: str, lease_seconds: float, besides: str) -> bool:
    """Whether a live worker other than `besides` has trained, or is training, a job of `dataset`: it
    loaded the files (a worker keeps a dataset it decoded)."""
    live = select(Worker.id).where(worker_is_live(lease_seconds), Worker.id != besides)
    # a running job past its first recorded step: claimed by one that lacks the files, it has none yet
    training = and_(Job.status == JobStatus.running, Job.step > 0)
    trained = select(Job.id).where(
        of_dataset(dataset), Job.worker_id.in_(live), or_(Job.status == JobStatus.succeeded, training)
    )
    return session.scalar(trained.limit(1)) is not None


def live_workers(
    session: Session,
    lease_seconds: float,
    host_key: str | None = None,
    now: datetime | None = None,
    lock: bool = False,
) -> list[Worker]:
    """The live workers (worker_is_live), on one host when given its key, oldest first; with `lock`, their
    rows locked until the transaction ends (PostgreSQL; SQLite's write transaction already excludes)."""
    query = select(Worker).where(worker_is_live(lease_seconds, now)).order_by(Worker.started_at, Worker.id)
    if host_key is not None:
        query = query.where(Worker.host_key == host_key)
    if lock:
        query = query.with_for_update()
    return list(session.scalars(query))


def last_worker_heartbeat(session: Session) -> datetime | None:
    """The latest heartbeat of any worker, or None when no worker has a record."""
    return session.scalar(select(func.max(Worker.heartbeat_at)))


# --- the service's state, for /metrics -----------------------------------------------------------


@dataclass(frozen=True)
class EpochTimes:
    """Finished epochs of one backend's jobs and their training seconds, as a cumulative histogram."""

    count: int
    seconds: float
    at_most: list[int]  # how many took at most each bucket's bound, in the bounds' order


def job_counts(session: Session) -> dict[JobStatus, int]:
    """How many jobs are in each state (every state, zeros included)."""
    rows = session.execute(select(Job.status, func.count()).group_by(Job.status))
    return dict.fromkeys(JobStatus, 0) | {JobStatus(status): n for status, n in rows}


def oldest_queued_at(session: Session) -> datetime | None:
    """When the job that has waited longest entered the queue (submitted, or given back: requeued_at);
    None when the queue is empty."""
    entered = func.coalesce(Job.requeued_at, Job.created_at)
    return session.scalar(select(func.min(entered)).where(Job.status == JobStatus.queued))


class WorkerCounts(NamedTuple):
    live: int  # live_workers
    training: int  # of those, the ones training a job
    standing_by: int  # of those, the ones beyond their host's cores (workers/presence.py)


def count_live_workers(session: Session, lease_seconds: float, now: datetime | None = None) -> WorkerCounts:
    """How many workers are live (idle or training, as GET /workers lists them), how many train a job,
    and how many stand by."""
    standing_by = func.count(case((Worker.standing_by, 1)))  # count() skips the NULLs of the others
    query = select(func.count(), func.count(Worker.job_id), standing_by).where(
        worker_is_live(lease_seconds, now)
    )
    live, training, waiting = session.execute(query).one()
    return WorkerCounts(live, training, waiting)


def epoch_times(session: Session, bounds: Sequence[float]) -> dict[str, EpochTimes]:
    """Each backend's finished epochs and their seconds, counted under each bound in one pass: those
    a job kept, and those it trains again (rewound_epochs), so that the counts never go down."""
    epochs = union_all(
        select(EpochMetric.job_id, EpochMetric.seconds), select(RewoundEpoch.job_id, RewoundEpoch.seconds)
    ).subquery()
    buckets = [func.sum(case((epochs.c.seconds <= bound, 1), else_=0)) for bound in bounds]
    query = (
        select(Job.backend, func.count(), func.sum(epochs.c.seconds), *buckets)
        .join(Job, Job.id == epochs.c.job_id)
        .group_by(Job.backend)
    )
    return {
        backend: EpochTimes(count, float(seconds or 0.0), [int(n or 0) for n in at_most])
        for backend, count, seconds, *at_most in session.execute(query)
    }


# --- studies ------------------------------------------------------------------------------------


def best_epochs(session: Session, job_ids: Iterable[int]) -> dict[int, int]:
    """The epoch whose weights each of these jobs that is a trained model kept."""
    ids = [job_id for job_id in job_ids if _storable(job_id)]
    rows = session.execute(
        select(TrainedModel.job_id, TrainedModel.best_epoch).where(TrainedModel.job_id.in_(ids))
    )
    return {row.job_id: row.best_epoch for row in rows}


def get_study(session: Session, study_id: int) -> Study | None:
    """The study, or None."""
    return session.get(Study, study_id) if _storable(study_id) else None


def list_studies(session: Session, limit: int = 20, offset: int = 0) -> tuple[list[Study], int]:
    """A page of studies, newest first, and how many there are in all."""
    count = session.scalar(select(func.count()).select_from(Study)) or 0
    query = _page(select(Study).order_by(Study.id.desc()), limit, offset)
    return list(session.scalars(query)), count


def study_config(study: Study) -> StudyCreate:
    """The study's configuration as submitted, with `trials` as extended since."""
    return StudyCreate.model_validate(study.config).model_copy(update={"trials": study.trials})


def study_jobs(session: Session, study_id: int) -> list[Job]:
    """The study's trials (jobs), in trial order, as committed (not as this session first loaded
    them: the study's decisions read them after taking its lock)."""
    query = select(Job).where(Job.study_id == study_id).order_by(Job.trial_number)
    return list(session.scalars(query.execution_options(populate_existing=True)))


def validation_curves(session: Session, job_ids: Iterable[int]) -> dict[int, dict[int, float]]:
    """Each job's validation accuracy after each of its recorded epochs: job id -> {epoch: accuracy}."""
    ids = [job_id for job_id in job_ids if _storable(job_id)]
    curves: dict[int, dict[int, float]] = {job_id: {} for job_id in ids}
    rows = session.execute(
        select(EpochMetric.job_id, EpochMetric.epoch, EpochMetric.validation_accuracy).where(
            EpochMetric.job_id.in_(ids), EpochMetric.validation_accuracy.is_not(None)
        )
    )
    for row in rows:
        curves[row.job_id][row.epoch] = row.validation_accuracy
    return curves


def study_epochs(session: Session, study_id: int) -> int:
    """How many epochs the study's trials have recorded a validation accuracy for, together."""
    query = (
        select(func.count())
        .select_from(EpochMetric)
        .join(Job, Job.id == EpochMetric.job_id)
        .where(Job.study_id == study_id, EpochMetric.validation_accuracy.is_not(None))
    )
    return session.scalar(query) or 0


def trial_records(
    config: StudyCreate, jobs: Iterable[Job], curves: dict[int, dict[int, float]]
) -> list[TrialRecord]:
    """The study's jobs as service.search sees them: searched values, status, validation accuracies."""
    return [
        TrialRecord(
            number=job.trial_number if job.trial_number is not None else -1,
            params={field: job.spec[field] for field in config.space},
            status=job.status,
            value=job.validation_accuracy if job.status == JobStatus.succeeded else None,
            intermediate=curves.get(job.id, {}),
        )
        for job in jobs
    ]


def study_trials(session: Session, study: Study) -> tuple[StudyCreate, list[TrialRecord]]:
    """What every decision of the study reads: its configuration and its trials."""
    config = study_config(study)
    jobs = study_jobs(session, study.id)
    return config, trial_records(config, jobs, validation_curves(session, (job.id for job in jobs)))
