"""What the routers share: the public shape of a job and a dataset, the budget and queue room a job
must fit, which jobs are trained models, the model ids of a comparison, an image of a split, a figure. A router
imports these, deps, schemas and the store, never another router."""

from __future__ import annotations

import re
from typing import Annotated, Any

import numpy as np
from fastapi import Query, Response
from pydantic import BaseModel
from sqlalchemy import Connection, Row
from sqlalchemy.orm import Session

from service.api.schemas import DatasetPublic, JobPublic, Progress
from service.errors import ProblemError, Responses, echo, invalid, not_found, not_trained
from service.ml.data import DATASETS, Dataset, dataset_status
from service.ml.metrics import near_chance
from service.ml.spec import NUM_CLASSES, TrainSpec
from service.settings import Settings
from service.store.db import begin_write
from service.store.jobs import enqueue_job
from service.store.models import Job, JobStatus, TrainedModel
from service.store.queries import MAX_INTEGER, count_queued, get_job, get_job_row, get_model, job_spec


def json_response(body: BaseModel) -> Response:
    """The model as JSON, sent as it is: FastAPI re-validates a returned model against response_model."""
    return Response(body.model_dump_json(), media_type="application/json")


def chance_warning(spec: TrainSpec, validation: float | None, test: float | None) -> str | None:
    """near_chance's sentence for a model of this spec with these accuracies."""
    return near_chance(NUM_CLASSES, spec.learning_rate, validation=validation, test=test)


def job_public(job: Job | Row[Any]) -> JobPublic:
    spec = job_spec(job)
    warning = chance_warning(spec, job.validation_accuracy, job.test_accuracy)
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
        validation_accuracy=job.validation_accuracy,
        test_accuracy=job.test_accuracy,
        near_chance=warning is not None,
        warning=warning,
        progress=Progress(
            epoch=job.epoch or None, epochs=spec.epochs, step=job.step or None, steps=job.steps, loss=job.loss
        ),
    )


def read_job_public(connection: Connection, job_id: int) -> JobPublic:
    """GET /jobs/{id}: the job's public shape, or 404."""
    row = get_job_row(connection, job_id)
    if row is None:
        raise not_found("job", job_id)
    return job_public(row)


def check_budget(spec: TrainSpec, settings: Settings) -> None:
    """Refuse jobs the service should not run, before anything is stored."""
    if spec.n_parameters > settings.max_parameters:
        raise invalid(
            "hidden_layers",
            f"this network has {spec.n_parameters:,} parameters; "
            f"the limit is {settings.max_parameters:,} (MLPLAB_MAX_PARAMETERS)",
        )
    available = DATASETS[spec.dataset].splits["train"] - spec.validation_size  # the rest is validated on
    samples = spec.epochs * min(spec.train_limit or available, available)
    if samples > settings.max_sample_epochs:
        raise invalid(
            "epochs",
            f"epochs x training images = {samples:,}; "
            f"the limit is {settings.max_sample_epochs:,} (MLPLAB_MAX_SAMPLE_EPOCHS)",
        )


def queue_full(settings: Settings, queued: int, adding: int = 1) -> ProblemError:
    """429: `adding` more jobs would put the queue past MLPLAB_MAX_QUEUED."""
    now = (
        f"{queued} jobs are queued"
        if adding == 1
        else f"this request adds {adding} jobs to the {queued} queued"
    )
    return ProblemError(
        429,
        "Queue full",
        f"{now}; the limit is {settings.max_queued} (MLPLAB_MAX_QUEUED). Retry once some have run.",
        headers={"Retry-After": "30"},
    )


def enqueue(
    session: Session, settings: Settings, specs: list[TrainSpec], sweep_id: str | None = None
) -> list[Job]:
    """Queue these jobs, all or none: 429 when the queue has no room for them all.

    The count and the inserts are one write transaction, so the limit holds; the caller commits
    before it returns, to release the write lock in its own thread hop (docs/reliability.md).
    """
    begin_write(session)
    queued = count_queued(session)
    if queued + len(specs) > settings.max_queued:
        raise queue_full(settings, queued, len(specs))
    return [enqueue_job(session, spec, sweep_id=sweep_id) for spec in specs]


# A trained model never changes, so neither do its figures.
PNG_DOC: Responses = {200: {"content": {"image/png": {}}, "description": "A PNG image"}}


def png_response(content: bytes) -> Response:
    """A figure of trained models, cacheable for a day."""
    return Response(content, media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})


def dataset_public(name: str, settings: Settings) -> DatasetPublic:
    status = dataset_status(name, settings.data_dir, download=settings.download)
    return DatasetPublic(
        name=name,
        present=status["present"],
        will_download=status["will_download"],
        splits=status["splits"],
        classes=list(status["classes"]),
    )


def dataset_image(data: Dataset, split: str, index: int) -> tuple[np.ndarray, int]:
    """Image `index` of a split and its label; 404 naming the split's range when there is no such image."""
    images, labels = data.split(split)
    if index >= len(images):
        raise ProblemError(
            404,
            "Image not found",
            f"The {split} split of {data.name} has {len(images):,} images "
            f"(index 0 to {len(images) - 1:,}); there is no index {index:,}.",
        )
    return images[index], int(labels[index])


MIN_COMPARED, MAX_COMPARED = 2, 20


IdsQuery = Annotated[
    str,
    Query(
        description=f"{MIN_COMPARED} to {MAX_COMPARED} model ids, comma-separated: 3,7,12", examples=["1,2,3"]
    ),
]


def _is_id(text: str) -> bool:
    # ASCII digits only: str.isdigit() also takes '²', which int() refuses.
    return re.fullmatch(r"[0-9]{1,10}", text) is not None and 1 <= int(text) <= MAX_INTEGER


def parse_ids(ids: str) -> list[int]:
    """The ids of `?ids=3,7,12`, or a 422 naming what is wrong with them."""
    parts = [part.strip() for part in ids.split(",") if part.strip()]
    bad = next((part for part in parts if not _is_id(part)), None)
    if bad is not None:
        raise invalid(
            "query.ids",
            f"{echo(bad)} is not a model id: give comma-separated integers from 1 to {MAX_INTEGER:,}, "
            "e.g. ids=3,7,12",
        )
    numbers = [int(part) for part in parts]
    if not MIN_COMPARED <= len(numbers) <= MAX_COMPARED:
        raise invalid("query.ids", f"{len(numbers)} ids; compare {MIN_COMPARED} to {MAX_COMPARED} models")
    if len(set(numbers)) != len(numbers):
        repeated = next(n for n in numbers if numbers.count(n) > 1)
        raise invalid("query.ids", f"model {repeated} is listed twice")
    return numbers


def require_trained(session: Session, job_id: int) -> Job:
    """The job if it is a trained model: 404 for an unknown id, 409 for a job that has not succeeded."""
    job = get_job(session, job_id)
    if job is None:
        raise not_found("model", job_id)
    if job.status != JobStatus.succeeded:
        raise not_trained(job.id, job.status)
    return job


def trained_model(session: Session, job_id: int) -> TrainedModel:
    """The stored model of a trained job (require_trained's problems otherwise); `.weights` read on access."""
    model = get_model(session, job_id)
    if model is None:  # say why; a succeeded job has its model (finish_job stores both at once)
        require_trained(session, job_id)
        raise not_found("model", job_id)
    return model


def differing(specs: list[TrainSpec]) -> list[str]:
    """The spec fields whose values are not all equal, in TrainSpec's order."""
    dumps = [spec.model_dump(mode="json") for spec in specs]
    return [field for field in TrainSpec.model_fields if any(d[field] != dumps[0][field] for d in dumps[1:])]


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "-".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def labels(ids: list[int], specs: list[TrainSpec]) -> list[str]:
    """Legend entries: '#id' and the hyperparameters that set each model apart (its full name when none do)."""
    fields = differing(specs)
    if not fields:
        return [f"#{job_id} {spec.name}" for job_id, spec in zip(ids, specs, strict=True)]
    return [
        f"#{job_id} " + ", ".join(f"{f}={_show(getattr(spec, f))}" for f in fields)
        for job_id, spec in zip(ids, specs, strict=True)
    ]
