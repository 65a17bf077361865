"""Figures of trained models as PNG: confusion matrix, loss curves, misclassified images."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from functools import partial
from typing import Annotated, Concatenate, Literal, ParamSpec

import numpy as np
from fastapi import Query, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service import plots
from service.api.database import Database
from service.api.deps import (
    DatabaseDep,
    InferenceDep,
    ModelRefDep,
    ModelRefsDep,
    reader_router,
)
from service.api.inference import CHUNK, NO_VALIDATION_DOC, Inference, SplitQuery, first_mistakes
from service.api.params import DIGITS
from service.api.presenters import PNG_DOC, images_seen, labels, png_response, require_trained
from service.api.schemas import MAX_CURVE_POINTS, EvalSplit
from service.errors import NOT_TRAINED_DOC, Responses, problem_doc
from service.ml.data import DATASETS, Dataset
from service.ml.evaluation import SplitPredictions
from service.ml.splits import file_of, scored_indices
from service.ml.weights import Weights
from service.store.models import Job
from service.store.queries import get_epochs, get_loss_curve, job_spec
from service.turns import share_full

P = ParamSpec("P")
# Most multiply-adds a mistakes figure spends looking for mistakes when the split's predictions are not
# known: a whole train split for a 800,000-parameter network, a few thousand images for the largest.
MISTAKES_BUDGET = 50_000_000_000

# A figure not drawn before waits for service.plots' lock: 503 when too many already wait, 429 when this
# client has its share of them.
FIGURE_SHARE_DOC: Responses = {429: problem_doc(share_full(plots.DRAWING.shares.mine))}
FIGURE_DOC: Responses = (
    PNG_DOC | FIGURE_SHARE_DOC | {503: problem_doc(f"{plots.FIGURE_QUEUE_FULL}; or the database unavailable")}
)
DATASET_FIGURE_DOC: Responses = (
    PNG_DOC
    | FIGURE_SHARE_DOC
    | {503: problem_doc(f"{plots.FIGURE_QUEUE_FULL}; or the database, or the dataset's files, unavailable")}
)


router = reader_router("plots", responses=NOT_TRAINED_DOC)

XAxis = Literal["step", "samples"]
XQuery = Annotated[XAxis, Query(description="step, or training images seen, to compare batch sizes")]


def _spaced(name: str) -> str:
    return name.replace(",", ", ")  # a spec's name, breakable where a title wraps


def _curves(session: Session, jobs: list[Job], names: list[str], x: XAxis) -> list[plots.Curve]:
    curves = []
    for job, name in zip(jobs, names, strict=True):
        spec = job_spec(job)
        at = partial(images_seen, spec) if x == "samples" else int
        per_epoch = (job.steps or 0) // spec.epochs  # an epoch's mean loss is drawn where the epoch ended
        (losses, _), epochs = get_loss_curve(session, job.id, MAX_CURVE_POINTS), get_epochs(session, job.id)
        curves.append(
            plots.Curve(
                label=name,
                x=[at(p.step) for p in losses],
                loss=[p.loss for p in losses],
                epoch_x=[at(e.epoch * per_epoch) for e in epochs] if per_epoch else [],
                epoch_loss=[e.loss for e in epochs] if per_epoch else [],
            )
        )
    return curves


async def _figure(
    inference: Inference,
    key: tuple[object, ...],
    database: Database,
    gather: Callable[Concatenate[Session, P], Callable[[], bytes]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> bytes:
    """The figure named by `key`, drawn once: gather reads its data in one hop and returns the drawing."""

    async def draw() -> bytes:
        with plots.DRAWING.reserving():
            drawing = await database.run(gather, *args, **kwargs)
        return await run_in_threadpool(drawing)

    return await drawn(inference, key, draw)


async def drawn(inference: Inference, key: tuple[object, ...], draw: Callable[[], Awaitable[bytes]]) -> bytes:
    """The figure named by `key`: at once when drawn before, waited for when another request draws it
    now, else drawn in a place of this client's share of the figure queue (one for all its requests for
    that figure)."""
    png = inference.figures.peek(key)
    if png is not None:
        return png
    # drawn for another request already: waiting for it adds no work, so takes no place
    with nullcontext() if inference.figures.loading(key) else plots.DRAWING.place(key):
        return await inference.figure(key, draw)


@router.get(
    "/models/{model}/confusion-matrix.png",
    response_class=Response,
    responses=DATASET_FIGURE_DOC | NO_VALIDATION_DOC,
)
async def confusion_matrix_png(
    ref: ModelRefDep,
    inference: InferenceDep,
    split: SplitQuery = "test",
) -> Response:
    """The confusion matrix as a heatmap: counts in the cells, true classes down, predicted across."""

    async def draw() -> bytes:
        with plots.DRAWING.reserving():
            spec, matrix = await inference.confusion(ref.id, split)
        title = f"model {ref.id}, {split} split: {_spaced(spec.name)}"
        classes = DATASETS[spec.dataset].classes
        return await run_in_threadpool(plots.confusion_matrix_png, matrix, classes, title=title)

    return png_response(await drawn(inference, ("confusion", ref.id, split), draw), ref.headers)


def _loss_curve(session: Session, job_id: int, x: XAxis) -> Callable[[], bytes]:
    job = require_trained(session, job_id)
    curves = _curves(session, [job], [""], x)
    title = f"model {job.id}: {_spaced(job_spec(job).name)}\ntest accuracy {job.test_accuracy or 0:.2%}"
    xlabel = "samples seen" if x == "samples" else "step"
    return partial(plots.loss_curves_png, curves, title=title, xlabel=xlabel)


@router.get("/models/{model}/loss-curve.png", response_class=Response, responses=FIGURE_DOC)
async def loss_curve_png(
    ref: ModelRefDep, database: DatabaseDep, inference: InferenceDep, x: XQuery = "step"
) -> Response:
    """The recorded loss against steps (dots: each epoch's mean loss)."""
    return png_response(
        await _figure(inference, ("loss", ref.id, x), database, _loss_curve, ref.id, x), ref.headers
    )


def _compare(session: Session, ids: list[int], x: XAxis) -> Callable[[], bytes]:
    jobs = [require_trained(session, job_id) for job_id in ids]
    names = labels(ids, [job_spec(job) for job in jobs])
    names = [f"{name} (test {job.test_accuracy or 0:.2%})" for name, job in zip(names, jobs, strict=True)]
    return partial(
        plots.loss_curves_png,
        _curves(session, jobs, names, x),
        title="loss of models " + ", ".join(map(str, ids)),
        xlabel="samples seen" if x == "samples" else "step",
    )


@router.get("/compare.png", response_class=Response, responses=FIGURE_DOC)
async def compare_png(
    refs: ModelRefsDep, database: DatabaseDep, inference: InferenceDep, x: XQuery = "step"
) -> Response:
    """Several models' loss curves on one axis, each keyed by the hyperparameters that differ."""
    ids = [ref.id for ref in refs]
    figure = await _figure(inference, ("compare", tuple(ids), x), database, _compare, ids, x)
    return png_response(figure)


def _mistakes(
    job_id: int,
    weights: Weights,
    data: Dataset,
    split: EvalSplit,
    limit: int,
    total: int,
    known: SplitPredictions | None,
) -> Callable[[], bytes]:
    images, truth = data.split(file_of(split))
    shown_from = scored_indices(truth, weights.spec, split)
    wanted, scanned = min(limit, total), len(shown_from)
    if known is not None:
        shown = shown_from[known.predicted[shown_from] != truth[shown_from]][:wanted]
        predicted = known.predicted[shown]
    else:  # the first mistakes only, within a budget of arithmetic: not the whole split's predictions
        scanned = min(scanned, max(CHUNK, MISTAKES_BUDGET // weights.spec.n_parameters))
        shown, predicted = first_mistakes(weights, images, truth, shown_from[:scanned], wanted)
    looked = f", looked for in its first {scanned:,}" if len(shown) < wanted else ""
    title = (
        f"model {job_id}: the first {len(shown)} of {total:,} mistakes on {len(shown_from):,} {split} images"
        f"{looked} (true → predicted, #index)"
    )
    return partial(
        plots.mistakes_png, images[shown], truth[shown], predicted, data.classes, title=title, indices=shown
    )


@router.get(
    "/models/{model}/mistakes.png",
    response_class=Response,
    responses=DATASET_FIGURE_DOC | NO_VALIDATION_DOC,
)
async def mistakes_png(
    ref: ModelRefDep,
    inference: InferenceDep,
    split: SplitQuery = "test",
    limit: Annotated[int, Query(ge=1, le=100, description="Most images shown"), DIGITS] = 36,
) -> Response:
    """Misclassified images of a split in index order, each captioned 'true → predicted'."""

    job_id = ref.id

    async def draw() -> bytes:
        with plots.DRAWING.reserving():  # looking for mistakes costs more than drawing them
            weights, data = await inference.model_and_data(job_id)
            matrix = np.asarray((await inference.confusion(job_id, split))[1])
            total = int(matrix.sum() - np.trace(matrix))
            known = await inference.known_predictions(job_id, file_of(split))
            drawing = await run_in_threadpool(_mistakes, job_id, weights, data, split, limit, total, known)
        return await run_in_threadpool(drawing)

    return png_response(await drawn(inference, ("mistakes", job_id, split, limit), draw), ref.headers)
