"""Training jobs: submit, list, read, cancel, and their loss and epoch records."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response
from sqlalchemy.orm import Session

from service.api.deps import (
    DatabaseDep,
    JobDep,
    SessionDep,
    SettingsDep,
    WriterDep,
    reader_router,
)
from service.api.paging import PageLimit, PageOffset
from service.api.params import DIGITS, Whole
from service.api.presenters import (
    check_budget,
    enqueue,
    epoch_points,
    job_json,
    job_public,
    json_response,
    loss_points,
    require_job,
)
from service.api.schemas import (
    MAX_CURVE_POINTS,
    SWEEP_ID_PATTERN,
    EpochPoint,
    JobPublic,
    JobsPublic,
    LossCurvePublic,
    LossesPublic,
    LossPoint,
)
from service.errors import SUBMIT_DOCS, ProblemError, found, invalid, problem_doc
from service.lru import LRU
from service.ml.spec import MOMENTUM_DEFAULT, Backend, TrainSpec, momentum_unread
from service.store.db import begin_write
from service.store.jobs import JobConflict, cancel_job
from service.store.models import JobStatus
from service.store.queries import (
    JobSort,
    get_epochs,
    get_loss_curve,
    get_losses,
    job_row_read,
    job_spec,
    list_jobs,
)

router = reader_router("jobs", "/jobs")


@router.post("", status_code=202, response_model=JobPublic, dependencies=[WriterDep], responses=SUBMIT_DOCS)
def submit_job(spec: TrainSpec, session: SessionDep, settings: SettingsDep, response: Response) -> JobPublic:
    """Submit a training job; a worker picks it up."""
    if spec.momentum != MOMENTUM_DEFAULT and (why := momentum_unread([spec.optimizer], "this job's")):
        raise invalid("body.momentum", why)  # 202 for sgd with momentum 0.5 read as a setting it used
    check_budget(spec, settings)
    (job,) = enqueue(session, settings, [spec])
    response.headers["Location"] = f"/jobs/{job.id}"
    public = job_public(job)
    session.commit()  # release the write lock in this thread hop
    return public


def _jobs_page(
    session: Session, /, finished: LRU[int, bytes], limit: int, offset: int, **filters: Any
) -> bytes:
    """A JobsPublic's JSON, put together from each job's (job_json: a finished one's is kept)."""
    rows, count = list_jobs(session, limit=limit, offset=offset, **filters)
    return b'{"data":[%s],"count":%d}' % (b",".join(job_json(row, finished) for row in rows), count)


@router.get("", response_model=JobsPublic)
async def read_jobs(
    database: DatabaseDep,
    status: JobStatus | None = None,
    backend: Backend | None = None,
    sweep_id: Annotated[
        str | None, Query(pattern=SWEEP_ID_PATTERN, description="Only the jobs of this sweep")
    ] = None,
    sort: Annotated[
        JobSort,
        Query(
            description="Order of the whole list, before paging: a field, descending with a leading '-'. "
            "duration runs from start to end (to now while running). Jobs without a value come last."
        ),
    ] = "-id",
    limit: PageLimit = 50,
    offset: PageOffset = 0,
) -> Response:
    """List jobs, newest first (or in `sort` order), a page at a time."""
    page = await database.read_page(
        _jobs_page,
        database.finished_jobs,
        limit,
        offset,
        status=status,
        backend=backend,
        sweep_id=sweep_id,
        sort=sort,
    )
    return json_response(page)


@router.get("/{job_id}", response_model=JobPublic)
async def read_job(job_id: Whole, database: DatabaseDep) -> Response:
    """A job: its spec, status and live progress."""
    body = database.finished_jobs.get(job_id)
    if body is None:
        read = job_row_read(job_id)
        row = found(None if read is None else await database.first(*read), "job", job_id)
        body = job_json(row, database.finished_jobs)
    return json_response(body)


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    dependencies=[WriterDep],
    responses={409: problem_doc("The job has already finished")},
)
def cancel(job_id: Whole, session: SessionDep) -> JobPublic:
    """Cancel a job: at once when queued, at the worker's next progress write or heartbeat when running."""
    # The write lock is taken and released in this one thread hop (docs/reliability.md, API notes).
    begin_write(session)
    job = require_job(session, job_id)
    try:
        public = job_public(cancel_job(session, job.id))
        session.commit()
        return public
    except JobConflict:
        raise ProblemError(
            409,
            "Job already finished",
            f"Job {job.id} has already ended ({job.status}): only queued or running jobs can be cancelled.",
        ) from None


MAX_LOSS_PAGE = 10_000


def _losses_page(
    session: Session, /, job_id: int, after_step: int, limit: int
) -> tuple[list[LossPoint], bool]:
    """A page of the job's losses, and whether more follow; 404 for an unknown job."""
    job = require_job(session, job_id)
    rows = get_losses(session, job_id, after_step, limit=limit + 1)
    points = loss_points(job_spec(job), ((r.epoch, r.step, r.loss) for r in rows[:limit]))
    return points, len(rows) > limit


@router.get("/{job_id}/losses", response_model=LossesPublic)
async def read_losses(
    job_id: Whole,
    database: DatabaseDep,
    request: Request,
    after_step: Annotated[int, Query(ge=0, description="Only the losses of later steps"), DIGITS] = 0,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LOSS_PAGE, description="Most losses in the page"), DIGITS
    ] = 1000,
) -> Response:
    """The recorded losses (LossPoint says which) a page at a time, readable while the job runs."""
    page, more = await database.run(_losses_page, job_id, after_step, limit)
    following = request.url.include_query_params(after_step=page[-1].step, limit=limit) if more else None
    return json_response(
        LossesPublic(data=page, next=None if following is None else f"{following.path}?{following.query}")
    )


def _loss_curve(session: Session, /, job_id: int) -> LossCurvePublic:
    job = require_job(session, job_id)
    points, count = get_loss_curve(session, job_id, MAX_CURVE_POINTS)
    return LossCurvePublic(data=loss_points(job_spec(job), points), count=count)


@router.get("/{job_id}/loss-curve", response_model=LossCurvePublic)
async def read_loss_curve(job_id: Whole, database: DatabaseDep) -> Response:
    """The loss curve for drawing: a bounded number of points however many losses the job recorded."""
    return json_response(await database.run(_loss_curve, job_id))


@router.get("/{job_id}/epochs", response_model=list[EpochPoint])
def read_epochs(job: JobDep, session: SessionDep) -> list[EpochPoint]:
    """Mean loss, accuracies and time of each finished epoch."""
    return epoch_points(job, get_epochs(session, job.id))
