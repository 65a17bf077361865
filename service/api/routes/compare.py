"""Comparison of trained models: hyperparameters side by side, accuracies, and curves on one axis."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from service.api.deps import DatabaseDep, ReaderDep
from service.api.presenters import IdsQuery, differing, json_response, labels, parse_ids, require_trained
from service.api.schemas import ComparedModelPublic, ComparisonPublic, CurvePoint, EpochPoint
from service.errors import NOT_TRAINED_DOC, PROBLEM_RESPONSES
from service.ml.spec import TrainSpec
from service.store.models import Job
from service.store.queries import get_epochs, get_losses, job_spec

router = APIRouter(
    tags=["compare"],
    dependencies=[ReaderDep],
    responses=PROBLEM_RESPONSES | NOT_TRAINED_DOC,
)


def curve(session: Session, job: Job, spec: TrainSpec) -> list[CurvePoint]:
    return [
        CurvePoint(epoch=r.epoch, step=r.step, samples=r.step * spec.batch_size, loss=r.loss)
        for r in get_losses(session, job.id)
    ]


def _comparison(session: Session, /, ids: list[int]) -> ComparisonPublic:
    jobs = [require_trained(session, job_id) for job_id in ids]
    specs = [job_spec(job) for job in jobs]
    names = labels(ids, specs)
    data = [
        ComparedModelPublic(
            id=job.id,
            name=spec.name,
            label=label,
            spec=spec,
            train_accuracy=job.train_accuracy or 0.0,
            validation_accuracy=job.validation_accuracy,
            test_accuracy=job.test_accuracy or 0.0,
            epochs=[EpochPoint.model_validate(r, from_attributes=True) for r in get_epochs(session, job.id)],
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


@router.get("/compare", response_model=ComparisonPublic)
async def compare(ids: IdsQuery, database: DatabaseDep) -> Response:
    """Several models side by side: which hyperparameters differ, accuracies, per-epoch metrics, loss curves."""
    return json_response(await database.run(_comparison, parse_ids(ids)))
