"""Training jobs: submit, list, read, cancel, and their loss and epoch records."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

from service.api.deps import JobDep, ReaderDep, SessionDep, SettingsDep, WriterDep
from service.api.schemas import SWEEP_ID_PATTERN, EpochPoint, JobPublic, JobsPublic, LossPoint, Progress
from service.errors import PROBLEM_RESPONSES, ProblemError, invalid, not_found
from service.ml.data import DATASETS
from service.ml.spec import TrainSpec
from service.settings import Settings
from service.store.db import begin_write
from service.store.jobs import (
    JobConflict,
    cancel_job,
    count_queued,
    enqueue_job,
    get_epochs,
    get_job,
    get_losses,
    job_spec,
    list_jobs,
)
from service.store.models import Job

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[ReaderDep], responses=PROBLEM_RESPONSES)


def job_public(job: Job) -> JobPublic:
    spec = job_spec(job)
    return JobPublic(
        id=job.id,
        name=job.name,
        status=job.status,
        spec=spec,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        attempts=job.attempts,
        worker=job.worker_id,
        error=job.error,
        cancel_requested=job.cancel_requested,
        sweep_id=job.sweep_id,
        train_accuracy=job.train_accuracy,
        test_accuracy=job.test_accuracy,
        progress=Progress(
            epoch=job.epoch or None, epochs=spec.epochs, step=job.step or None, steps=job.steps, loss=job.loss
        ),
    )


def check_budget(spec: TrainSpec, settings: Settings) -> None:
    """Refuse jobs the service should not run, before anything is stored."""
    if spec.n_parameters > settings.max_parameters:
        raise invalid(
            "hidden_layers",
            f"this network has {spec.n_parameters:,} parameters; "
            f"the limit is {settings.max_parameters:,} (MLPLAB_MAX_PARAMETERS)",
        )
    available = DATASETS[spec.dataset].splits["train"]
    samples = spec.epochs * min(spec.train_limit or available, available)
    if samples > settings.max_sample_epochs:
        raise invalid(
            "epochs",
            f"epochs x training images = {samples:,}; "
            f"the limit is {settings.max_sample_epochs:,} (MLPLAB_MAX_SAMPLE_EPOCHS)",
        )


def queue_full(settings: Settings, queued: int) -> ProblemError:
    return ProblemError(
        429,
        "Queue full",
        f"{queued} jobs are queued; the limit is {settings.max_queued} "
        "(MLPLAB_MAX_QUEUED). Retry once some have run.",
        headers={"Retry-After": "30"},
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    dependencies=[WriterDep],
    responses={
        400: PROBLEM_RESPONSES[422] | {"description": "Body not UTF-8"},
        429: PROBLEM_RESPONSES[422] | {"description": "Queue full"},
    },
)
def submit_job(spec: TrainSpec, session: SessionDep, settings: SettingsDep, response: Response) -> JobPublic:
    """Submit a training job; a worker picks it up."""
    check_budget(spec, settings)
    begin_write(session)  # the count and the insert in one write transaction: the limit holds
    queued = count_queued(session)
    if queued >= settings.max_queued:
        raise queue_full(settings, queued)
    job = enqueue_job(session, spec)
    response.headers["Location"] = f"/jobs/{job.id}"
    public = job_public(job)
    session.commit()  # release the write lock in this thread hop (see cancel)
    return public


@router.get("", response_model=JobsPublic)
def read_jobs(
    session: SessionDep,
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
    backend: Literal["numpy", "torch"] | None = None,
    sweep_id: Annotated[
        str | None, Query(pattern=SWEEP_ID_PATTERN, description="Only the jobs of this sweep")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobsPublic:
    """List jobs, newest first."""
    rows, count = list_jobs(
        session, status=status, backend=backend, limit=limit, offset=offset, sweep_id=sweep_id
    )
    return JobsPublic(data=[job_public(j) for j in rows], count=count)


@router.get("/{job_id}", response_model=JobPublic)
def read_job(job: JobDep) -> JobPublic:
    """A job: its spec, status and live progress."""
    return job_public(job)


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    dependencies=[WriterDep],
    responses={409: PROBLEM_RESPONSES[422] | {"description": "The job has already finished"}},
)
def cancel(job_id: int, session: SessionDep) -> JobPublic:
    """Cancel a job: at once when queued, at the worker's next progress write or heartbeat when running."""
    # Write handlers take the write lock and commit within their one threadpool hop. Held across a
    # hop (from a dependency to the handler, or to FastAPI's validation of the response, which runs
    # in the threadpool too), the lock waited for a free thread while every thread waited for the
    # lock: under 100 concurrent submissions and cancels, 30 s stalls and "database is locked".
    begin_write(session)
    job = get_job(session, job_id)
    if job is None:
        raise not_found("job", job_id)
    try:
        public = job_public(cancel_job(session, job.id))
        session.commit()
        return public
    except JobConflict:
        raise ProblemError(
            409,
            "Job already finished",
            f"Job {job.id} is {job.status}: only queued or running jobs can be cancelled.",
        ) from None


@router.get("/{job_id}/losses", response_model=list[LossPoint])
def read_losses(
    job: JobDep, session: SessionDep, after_step: Annotated[int, Query(ge=0)] = 0
) -> list[LossPoint]:
    """The loss every log_every steps, readable while the job runs."""
    return [
        LossPoint(epoch=r.epoch, step=r.step, loss=r.loss) for r in get_losses(session, job.id, after_step)
    ]


@router.get("/{job_id}/epochs", response_model=list[EpochPoint])
def read_epochs(job: JobDep, session: SessionDep) -> list[EpochPoint]:
    """Mean loss, accuracies and time of each finished epoch."""
    return [
        EpochPoint(
            epoch=r.epoch,
            loss=r.loss,
            train_accuracy=r.train_accuracy,
            test_accuracy=r.test_accuracy,
            seconds=r.seconds,
        )
        for r in get_epochs(session, job.id)
    ]
