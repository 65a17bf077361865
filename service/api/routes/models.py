"""Trained models (a succeeded job is a model; its id is the job's): list, accuracy, confusion, weights."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from service.api.deps import DatabaseDep, ModelDep, ReaderDep
from service.api.presenters import chance_warning, json_response
from service.api.schemas import AccuracyPublic, ConfusionMatrixPublic, ModelPublic, ModelsPublic, Split
from service.errors import NOT_TRAINED_DOC, PROBLEM_RESPONSES
from service.ml.data import DATASETS
from service.selection import ranked_by
from service.store.models import TrainedModel
from service.store.queries import ModelSort, count_models, job_spec, list_models

router = APIRouter(
    prefix="/models",
    tags=["models"],
    dependencies=[ReaderDep],
    responses=PROBLEM_RESPONSES | NOT_TRAINED_DOC,
)


def model_public(model: TrainedModel) -> ModelPublic:
    spec = job_spec(model.job)
    warning = chance_warning(spec, model.validation_accuracy, model.test_accuracy)
    return ModelPublic(
        id=model.job_id,
        name=spec.name,
        backend=spec.backend,
        dataset=spec.dataset,
        hidden_layers=spec.hidden_layers,
        activation=spec.activation,
        init=spec.init,
        optimizer=spec.optimizer,
        learning_rate=spec.learning_rate,
        lr_schedule=spec.lr_schedule,
        l2=spec.l2,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        train_limit=spec.train_limit,
        validation_size=spec.validation_size,
        sweep_id=model.job.sweep_id,
        train_accuracy=model.train_accuracy,
        validation_accuracy=model.validation_accuracy,
        test_accuracy=model.test_accuracy,
        best_epoch=model.best_epoch,
        stopped_epoch=model.stopped_epoch,
        seconds=model.seconds,
        created_at=model.created_at,
        near_chance=warning is not None,
        warning=warning,
    )


def _models_page(session: Session, /, sort: ModelSort, limit: int, offset: int) -> ModelsPublic:
    rows = list_models(session, sort=sort, limit=limit, offset=offset)
    total, validated = count_models(session)
    order = ranked_by(total, validated) if sort == "validation_accuracy" else sort
    return ModelsPublic(data=[model_public(m) for m in rows], count=total, ranked_by=order)


@router.get("", response_model=ModelsPublic)
async def read_models(
    database: DatabaseDep,
    sort: ModelSort = "validation_accuracy",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """Trained models with their key hyperparameters and accuracies, best first (as ranked_by says) or
    newest first, a page at a time."""
    return json_response(await database.run(_models_page, sort, limit, offset))


@router.get("/{job_id}", response_model=ModelPublic)
def read_model(model: ModelDep) -> ModelPublic:
    """One trained model."""
    return model_public(model)


@router.get("/{job_id}/accuracy", response_model=AccuracyPublic)
def read_accuracy(model: ModelDep) -> AccuracyPublic:
    """Train, validation and test accuracy of the model's weights."""
    return AccuracyPublic(
        train=model.train_accuracy, validation=model.validation_accuracy, test=model.test_accuracy
    )


@router.get("/{job_id}/confusion-matrix", response_model=ConfusionMatrixPublic)
def read_confusion_matrix(model: ModelDep, split: Split = "test") -> ConfusionMatrixPublic:
    """The 10x10 confusion matrix: rows are the true class, columns the predicted one."""
    matrix = model.confusion_test if split == "test" else model.confusion_train
    classes = DATASETS[job_spec(model.job).dataset].classes
    return ConfusionMatrixPublic(
        split=split, labels=list(range(len(matrix))), classes=list(classes), matrix=matrix
    )


@router.get(
    "/{job_id}/weights",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The .npz weight file"}},
)
def download_weights(model: ModelDep) -> Response:
    """The weights as .npz: spec + float32 W1, b1, ... (see README, 'Weight format')."""
    return Response(
        model.weights,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="mlplab-model-{model.job_id}.npz"'},
    )
