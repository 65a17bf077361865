"""Comparison of trained models: hyperparameters side by side, accuracies, and curves on one axis."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from service.api.deps import ReaderDep, SessionDep
from service.api.schemas import ComparedModelPublic, ComparisonPublic, CurvePoint, EpochPoint
from service.errors import PROBLEM_RESPONSES, invalid, not_found, not_trained
from service.ml.spec import TrainSpec
from service.store.jobs import JobStatus, get_epochs, get_job, get_losses, job_spec
from service.store.models import Job

router = APIRouter(
    tags=["compare"],
    dependencies=[ReaderDep],
    responses=PROBLEM_RESPONSES | {409: PROBLEM_RESPONSES[422] | {"description": "Not trained yet"}},
)

MIN_COMPARED, MAX_COMPARED = 2, 20

IdsQuery = Annotated[
    str,
    Query(
        description=f"{MIN_COMPARED} to {MAX_COMPARED} model ids, comma-separated: 3,7,12", examples=["1,2,3"]
    ),
]


def parse_ids(ids: str) -> list[int]:
    """The ids of `?ids=3,7,12`, or a 422 naming what is wrong with them."""
    parts = [part.strip() for part in ids.split(",") if part.strip()]
    bad = [part for part in parts if not part.isdigit()]
    if bad:
        raise invalid(
            "query.ids", f"{bad[0]!r} is not a model id: give comma-separated integers, e.g. ids=3,7,12"
        )
    numbers = [int(part) for part in parts]
    if not MIN_COMPARED <= len(numbers) <= MAX_COMPARED:
        raise invalid("query.ids", f"{len(numbers)} ids; compare {MIN_COMPARED} to {MAX_COMPARED} models")
    if len(set(numbers)) != len(numbers):
        repeated = next(n for n in numbers if numbers.count(n) > 1)
        raise invalid("query.ids", f"model {repeated} is listed twice")
    return numbers


def trained_jobs(session: Session, ids: list[int]) -> list[Job]:
    """The succeeded jobs with these ids, in order: 404 for an unknown one, then 409 for one not trained."""
    jobs: list[Job] = []
    for job_id in ids:
        job = get_job(session, job_id)
        if job is None:
            raise not_found("model", job_id)
        jobs.append(job)
    for job in jobs:
        if job.status != JobStatus.succeeded:
            raise not_trained(job.id, job.status)
    return jobs


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


def curve(session: Session, job: Job, spec: TrainSpec) -> list[CurvePoint]:
    return [
        CurvePoint(epoch=r.epoch, step=r.step, samples=r.step * spec.batch_size, loss=r.loss)
        for r in get_losses(session, job.id)
    ]


@router.get("/compare", response_model=ComparisonPublic)
def compare(ids: IdsQuery, session: SessionDep) -> ComparisonPublic:
    """Several models side by side: which hyperparameters differ, accuracies, per-epoch metrics, loss curves."""
    jobs = trained_jobs(session, parse_ids(ids))
    specs = [job_spec(job) for job in jobs]
    names = labels([job.id for job in jobs], specs)
    data = [
        ComparedModelPublic(
            id=job.id,
            name=spec.name,
            label=label,
            spec=spec,
            train_accuracy=job.train_accuracy or 0.0,
            test_accuracy=job.test_accuracy or 0.0,
            epochs=[
                EpochPoint(
                    epoch=r.epoch,
                    loss=r.loss,
                    train_accuracy=r.train_accuracy,
                    test_accuracy=r.test_accuracy,
                    seconds=r.seconds,
                )
                for r in get_epochs(session, job.id)
            ],
            losses=curve(session, job, spec),
        )
        for job, spec, label in zip(jobs, specs, names, strict=True)
    ]
    dumps = [spec.model_dump(mode="json") for spec in specs]
    return ComparisonPublic(
        data=data,
        count=len(data),
        differing=differing(specs),
        hyperparameters={field: [d[field] for d in dumps] for field in TrainSpec.model_fields},
    )
