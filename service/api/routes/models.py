"""Trained models (a succeeded job is a model; its id is the job's, or an alias names it): list,
accuracy, confusion, weights, ONNX, and training one again."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Body, Query, Response
from sqlalchemy.orm import Session
from starlette.responses import StreamingResponse

from service.api.deps import (
    DatabaseDep,
    InferenceDep,
    ModelDep,
    ModelRefDep,
    SessionDep,
    SettingsDep,
    WriterDep,
    reader_router,
)
from service.api.inference import NO_VALIDATION_DOC, SplitQuery
from service.api.paging import PageLimit, PageOffset
from service.api.presenters import (
    chance_warning,
    check_budget,
    enqueue,
    job_public,
    json_response,
    require_trained,
    trained_model,
)
from service.api.schemas import (
    AccuracyPublic,
    ClassScoresPublic,
    ConfusionMatrixPublic,
    JobPublic,
    ModelPublic,
    ModelsPublic,
    ReproduceCreate,
    ScoresPublic,
)
from service.errors import (
    DATASET_UNAVAILABLE_DOC,
    NOT_TRAINED_DOC,
    SUBMIT_DOCS,
    Responses,
)
from service.ml.data import DATASETS
from service.ml.metrics import class_scores
from service.ml.spec import DatasetName
from service.selection import ranked_by, validation_note
from service.store.db import begin_write
from service.store.models import TrainedModel
from service.store.queries import (
    ModelSort,
    aliases_by_model,
    count_models,
    job_spec,
    list_models,
    of_dataset,
    weights_size,
    weights_slice,
)

router = reader_router("models", "/models", responses=NOT_TRAINED_DOC)


def model_public(model: TrainedModel, aliases: list[str]) -> ModelPublic:
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
        momentum=spec.momentum,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        seed=spec.seed,
        train_limit=spec.train_limit,
        validation_size=spec.validation_size,
        early_stopping=spec.early_stopping,
        sweep_id=model.job.sweep_id,
        study_id=model.job.study_id,
        train_accuracy=model.train_accuracy,
        validation_accuracy=model.validation_accuracy,
        test_accuracy=model.test_accuracy,
        best_epoch=model.best_epoch,
        stopped_epoch=model.stopped_epoch,
        seconds=model.seconds,
        created_at=model.created_at,
        aliases=aliases,
        near_chance=warning is not None,
        warning=warning,
        validation_note=validation_note(spec.validation_size),
    )


def _models_page(
    session: Session, /, sort: ModelSort, limit: int, offset: int, dataset: DatasetName | None
) -> ModelsPublic:
    where = [] if dataset is None else [of_dataset(dataset)]
    rows = list_models(session, sort=sort, limit=limit, offset=offset, where=where)
    total, validated = count_models(session, *where)
    order = ranked_by(total, validated) if sort == "validation_accuracy" else sort
    named = aliases_by_model(session, [m.job_id for m in rows])
    data = [model_public(m, named.get(m.job_id, [])) for m in rows]
    return ModelsPublic(data=data, count=total, ranked_by=order)


@router.get("", response_model=ModelsPublic)
async def read_models(
    database: DatabaseDep,
    sort: Annotated[
        ModelSort,
        Query(
            description="validation_accuracy, test_accuracy: highest first (validation then test when some "
            "have no validation split); created_at: newest first. (GET /jobs's sort reads '-' for descending.)"
        ),
    ] = "validation_accuracy",
    limit: PageLimit = 100,
    offset: PageOffset = 0,
    dataset: Annotated[
        DatasetName | None,
        Query(description="Only the models of this dataset: accuracies on two datasets rank nothing"),
    ] = None,
) -> Response:
    """Trained models with their key hyperparameters, accuracies and aliases, best first (as ranked_by
    says) or newest first, a page at a time."""
    return json_response(await database.read_page(_models_page, sort, limit, offset, dataset))


@router.get("/{model}", response_model=ModelPublic)
def read_model(model: ModelDep, session: SessionDep) -> ModelPublic:
    """One trained model, by id or alias."""
    return model_public(model, aliases_by_model(session, [model.job_id]).get(model.job_id, []))


@router.get("/{model}/accuracy", response_model=AccuracyPublic)
def read_accuracy(model: ModelDep) -> AccuracyPublic:
    """Train, validation and test accuracy of the model's weights."""
    return AccuracyPublic(
        train=model.train_accuracy, validation=model.validation_accuracy, test=model.test_accuracy
    )


@router.get(
    "/{model}/confusion-matrix",
    response_model=ConfusionMatrixPublic,
    responses=DATASET_UNAVAILABLE_DOC | NO_VALIDATION_DOC,
)
async def read_confusion_matrix(
    ref: ModelRefDep, inference: InferenceDep, split: SplitQuery = "test"
) -> ConfusionMatrixPublic:
    """The 10x10 confusion matrix (rows are the true class, columns the predicted one), and each class's
    precision, recall and F1 read from it."""
    spec, matrix = await inference.confusion(ref.id, split)
    classes = DATASETS[spec.dataset].classes
    scores = class_scores(matrix)
    per_class = [
        ClassScoresPublic(
            label=k,
            support=int(scores.support[k]),
            **_defined(scores.precision[k], scores.recall[k], scores.f1[k]),
        )
        for k in range(len(matrix))
    ]
    return ConfusionMatrixPublic(
        split=split,
        labels=list(range(len(matrix))),
        classes=list(classes),
        matrix=matrix,
        per_class=per_class,
        macro_average=ScoresPublic(**_defined(*scores.macro())),
    )


def _defined(precision: float, recall: float, f1: float) -> dict[str, float | None]:
    """The three scores, an undefined one (NaN) as None: JSON has no NaN."""
    named = {"precision": precision, "recall": recall, "f1": f1}
    return {name: None if math.isnan(value) else float(value) for name, value in named.items()}


# Bytes a download reads and sends at a time: what each reader holds, however slowly it reads.
DOWNLOAD_CHUNK = 256 * 1024
# Each slice of stored weights walks SQLite's overflow pages from the value's start: in 256-kB slices an
# 80 MB file cost 4 s of the API's CPU (the walks add up to its square), in 4-MB slices 0.3 s; a slice
# is what a download holds in memory.
WEIGHT_SLICES = 16
MAX_WEIGHT_SLICE = 4 * 2**20


def _download(
    chunks: AsyncIterator[bytes], size: int, filename: str, ref_headers: dict[str, str]
) -> Response:
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Content-Length": str(size)}
        | ref_headers,
    )


def _binary(description: str) -> Responses:
    return {200: {"content": {"application/octet-stream": {}}, "description": description}}


@router.get("/{model}/weights", response_class=Response, responses=_binary("The .npz weight file"))
async def download_weights(ref: ModelRefDep, database: DatabaseDep) -> Response:
    """The weights as .npz: spec + float32 W1, b1, ... (docs/guide.md, 'The weight format')."""
    size = await database.run(_weights_size, ref.id)

    chunk = min(max(DOWNLOAD_CHUNK, -(-size // WEIGHT_SLICES)), MAX_WEIGHT_SLICE)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, size, chunk):
            yield await database.run(weights_slice, ref.id, start, chunk)

    return _download(chunks(), size, f"mlplab-model-{ref.id}.npz", ref.headers)


def _weights_size(session: Session, job_id: int) -> int:
    trained_model(session, job_id)  # 404 or 409 as every model route
    return weights_size(session, job_id)


@router.get(
    "/{model}/model.onnx",
    response_class=Response,
    responses=_binary(
        "The network as an ONNX graph (opset 17): float32 images [N, 784] in, probabilities out"
    ),
)
async def download_onnx(ref: ModelRefDep, inference: InferenceDep) -> Response:
    """The network as an ONNX graph (Gemm, activation, Softmax; opset 17), for onnxruntime and others."""
    graph = memoryview(await inference.onnx(ref.id))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(graph), DOWNLOAD_CHUNK):
            yield graph[start : start + DOWNLOAD_CHUNK].tobytes()

    return _download(chunks(), len(graph), f"mlplab-model-{ref.id}.onnx", ref.headers)


@router.post(
    "/{model}/reproduce",
    status_code=202,
    response_model=JobPublic,
    dependencies=[WriterDep],
    responses=SUBMIT_DOCS,
)
def reproduce(
    ref: ModelRefDep,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    body: Annotated[ReproduceCreate | None, Body(examples=[{}])] = None,  # refused when it holds a field
) -> JobPublic:
    """Train the model's spec again: the new job's `reproduction` says how close it came, once trained."""
    begin_write(session)  # the write lock first: the read below and the insert are one transaction
    original = require_trained(session, ref.id)
    spec = job_spec(original)
    check_budget(spec, settings, stored=True)
    (job,) = enqueue(session, settings, [spec], reproduces=original.id)
    response.headers["Location"] = f"/jobs/{job.id}"
    public = job_public(job)
    session.commit()  # release the write lock in this thread hop
    return public
