"""Comparison of trained models: hyperparameters side by side, accuracies, and curves on one axis."""

from __future__ import annotations

from fastapi import Response
from sqlalchemy.orm import Session

from service.api.deps import DatabaseDep, ModelRefsDep, reader_router
from service.api.presenters import (
    differing,
    epoch_points,
    job_warning,
    json_response,
    labels,
    loss_points,
    require_trained,
)
from service.api.schemas import (
    MAX_CURVE_POINTS,
    ComparedModelPublic,
    ComparisonPublic,
    LossPoint,
)
from service.errors import NOT_TRAINED_DOC
from service.ml.spec import TrainSpec
from service.store.models import Job
from service.store.queries import get_epochs, get_loss_curve, get_model, job_spec

router = reader_router("compare", responses=NOT_TRAINED_DOC)


def curve(session: Session, job: Job, spec: TrainSpec) -> list[LossPoint]:
    return loss_points(spec, get_loss_curve(session, job.id, MAX_CURVE_POINTS)[0])


def _comparison(session: Session, /, ids: list[int]) -> ComparisonPublic:
    jobs = [require_trained(session, job_id) for job_id in ids]
    specs = [job_spec(job) for job in jobs]
    names = labels(ids, specs)
    kept = [get_model(session, job.id) for job in jobs]
    data = [
        ComparedModelPublic(
            id=job.id,
            name=spec.name,
            label=label,
            spec=spec,
            train_accuracy=job.train_accuracy or 0.0,
            validation_accuracy=job.validation_accuracy,
            test_accuracy=job.test_accuracy or 0.0,
            best_epoch=model.best_epoch,
            stopped_epoch=model.stopped_epoch,
            epochs=epoch_points(job, get_epochs(session, job.id)),
            losses=curve(session, job, spec),
            near_chance=warning is not None,
            warning=warning,
        )
        for job, model, spec, label, warning in zip(
            jobs, kept, specs, names, map(job_warning, jobs), strict=True
        )
        if model is not None  # require_trained: a succeeded job has its model
    ]
    dumps = [spec.model_dump(mode="json") for spec in specs]
    return ComparisonPublic(
        data=data,
        count=len(data),
        differing=differing(specs),
        hyperparameters={field: [d[field] for d in dumps] for field in TrainSpec.model_fields},
    )


@router.get("/compare", response_model=ComparisonPublic)
async def compare(refs: ModelRefsDep, database: DatabaseDep) -> Response:
    """Several models side by side: which hyperparameters differ, accuracies, per-epoch metrics, loss curves."""
    return json_response(await database.run(_comparison, [ref.id for ref in refs]))
