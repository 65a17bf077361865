"""Figures of trained models as PNG: confusion matrix, loss curves, misclassified images."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service import plots
from service.api.deps import InferenceDep, ModelDep, ReaderDep, SessionDep, TrainedJobDep, TrainedJobsDep
from service.api.presenters import labels
from service.api.schemas import MAX_CURVE_POINTS, Split
from service.errors import DATASET_UNAVAILABLE_DOC, NOT_TRAINED_DOC, PROBLEM_RESPONSES, Responses
from service.ml.data import DATASETS, Dataset
from service.ml.weights import Weights
from service.store.models import Job
from service.store.queries import get_epochs, get_loss_curve, job_spec

router = APIRouter(
    tags=["plots"],
    dependencies=[ReaderDep],
    responses=PROBLEM_RESPONSES | NOT_TRAINED_DOC,
)

# A trained model never changes, so neither do its figures.
CACHE = {"Cache-Control": "public, max-age=86400"}
XAxis = Literal["step", "samples"]
XQuery = Annotated[
    XAxis, Query(description="step, or samples seen (step x batch_size) to compare batch sizes")
]


def _png(content: bytes) -> Response:
    return Response(content, media_type="image/png", headers=CACHE)


def _spaced(name: str) -> str:
    return name.replace(",", ", ")  # a spec's name, breakable where a title wraps


PNG: Responses = {200: {"content": {"image/png": {}}, "description": "A PNG image"}}


def _curves(session: Session, jobs: list[Job], names: list[str], x: XAxis) -> list[plots.Curve]:
    curves = []
    for job, name in zip(jobs, names, strict=True):
        spec = job_spec(job)
        scale = spec.batch_size if x == "samples" else 1
        per_epoch = (job.steps or 0) // spec.epochs  # an epoch's mean loss is drawn where the epoch ended
        (losses, _), epochs = get_loss_curve(session, job.id, MAX_CURVE_POINTS), get_epochs(session, job.id)
        curves.append(
            plots.Curve(
                label=name,
                x=[p.step * scale for p in losses],
                loss=[p.loss for p in losses],
                epoch_x=[e.epoch * per_epoch * scale for e in epochs] if per_epoch else [],
                epoch_loss=[e.loss for e in epochs] if per_epoch else [],
            )
        )
    return curves


@router.get("/models/{job_id}/confusion-matrix.png", response_class=Response, responses=PNG)
def confusion_matrix_png(model: ModelDep, split: Split = "test") -> Response:
    """The confusion matrix as a heatmap: counts in the cells, true classes down, predicted across."""
    spec = job_spec(model.job)
    matrix = model.confusion_test if split == "test" else model.confusion_train
    return _png(
        plots.confusion_matrix_png(
            matrix,
            DATASETS[spec.dataset].classes,
            title=f"model {model.job_id}, {split} split: {_spaced(spec.name)}",
        )
    )


@router.get("/models/{job_id}/loss-curve.png", response_class=Response, responses=PNG)
def loss_curve_png(job: TrainedJobDep, session: SessionDep, x: XQuery = "step") -> Response:
    """The batch loss against steps (dots: each epoch's mean loss)."""
    curves = _curves(session, [job], [""], x)
    title = f"model {job.id}: {_spaced(job_spec(job).name)}\ntest accuracy {job.test_accuracy or 0:.2%}"
    return _png(
        plots.loss_curves_png(curves, title=title, xlabel="samples seen" if x == "samples" else "step")
    )


@router.get("/compare.png", response_class=Response, responses=PNG)
def compare_png(jobs: TrainedJobsDep, session: SessionDep, x: XQuery = "step") -> Response:
    """Several models' loss curves on one axis, each keyed by the hyperparameters that differ."""
    names = labels([job.id for job in jobs], [job_spec(job) for job in jobs])
    names = [f"{name} (test {job.test_accuracy or 0:.2%})" for name, job in zip(names, jobs, strict=True)]
    return _png(
        plots.loss_curves_png(
            _curves(session, jobs, names, x),
            title="loss of models " + ", ".join(str(job.id) for job in jobs),
            xlabel="samples seen" if x == "samples" else "step",
        )
    )


def _mistakes(job_id: int, weights: Weights, data: Dataset, split: Split, limit: int) -> bytes:
    images, truth = data.split(split)
    if (
        split == "train" and weights.spec.train_limit is not None
    ):  # the images it was trained on, as its accuracy
        images, truth = images[: weights.spec.train_limit], truth[: weights.spec.train_limit]
    predicted = weights.predict_proba(images).argmax(axis=1)
    wrong = np.flatnonzero(predicted != truth)
    shown = wrong[:limit]
    title = (
        f"model {job_id}: the first {len(shown)} of {len(wrong):,} mistakes on {len(images):,} {split} images "
        "(true → predicted, #index)"
    )
    return plots.mistakes_png(
        images[shown], truth[shown], predicted[shown], data.classes, title=title, indices=shown
    )


@router.get("/models/{job_id}/mistakes.png", response_class=Response, responses=PNG | DATASET_UNAVAILABLE_DOC)
async def mistakes_png(
    job_id: int,
    inference: InferenceDep,
    split: Split = "test",
    limit: Annotated[int, Query(ge=1, le=100, description="Most images shown")] = 36,
) -> Response:
    """Misclassified images of a split in index order, each captioned 'true → predicted'."""
    weights, data = await inference.model_and_data(job_id)
    return _png(await run_in_threadpool(_mistakes, job_id, weights, data, split, limit))
