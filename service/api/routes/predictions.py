"""Predictions from a trained model: JSON pixels, uploaded images, and the per-image check on a split."""

from __future__ import annotations

import json
import re
from contextlib import nullcontext
from typing import Annotated, Literal

import numpy as np
from fastapi import Path, Query, Request, Response
from numpy.typing import NDArray
from starlette.concurrency import run_in_threadpool

from service.api.deps import InferenceDep, ModelRefDep, MonitoringDep, WriterDep, reader_router
from service.api.guard import allow_body
from service.api.inference import predict_proba, require_validation, runs_inline
from service.api.paging import PageLimit, PageOffset
from service.api.params import DIGITS, FileSplit
from service.api.presenters import dataset_image, json_response
from service.api.schemas import (
    ImagePredictionPublic,
    OutcomePublic,
    OutcomesPublic,
    PredictCreate,
    PredictionPublic,
    PredictionsPublic,
)
from service.errors import (
    DATASET_UNAVAILABLE_DOC,
    NOT_TRAINED_DOC,
    ProblemError,
    invalid,
    invalid_all,
    not_json,
    problem_doc,
    read_json,
    unreadable_body,
)
from service.imaging import (
    ACCEPTED_NAMES,
    DECODES_AT_ONCE,
    DECODES_PER_CLIENT,
    DECODES_WAITING,
    UPLOADS_AT_ONCE,
    UPLOADS_PER_CLIENT,
    UPLOADS_WAITING,
    ImageError,
    pixels_to_image,
    preprocess_upload,
)
from service.ml.familiar import InputProfile, input_warning
from service.ml.splits import IMAGE_USES, counted
from service.quoting import echo
from service.settings import Settings
from service.turns import AsyncTurns, share_full

router = reader_router("predictions", "/models", responses=NOT_TRAINED_DOC)

_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp", "application/octet-stream")
_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": PredictCreate.model_json_schema(ref_template="#/components/schemas/{model}"),
                "examples": {
                    "one": {"value": {"pixels": [0] * 784}},
                    "many": {"value": {"images": [[0] * 784, [255] * 784]}},
                },
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": f"A {ACCEPTED_NAMES} image of one digit (or garment)",
                        }
                    },
                    "required": ["file"],
                }
            },
            **{kind: {"schema": {"type": "string", "format": "binary"}} for kind in _IMAGE_TYPES},
        },
    }
}


def _images_from_json(body: bytes, settings: Settings) -> tuple[np.ndarray, bool]:
    one_of = 'send exactly one of {"pixels": [784 values]} or {"images": [[784 values], ...]}'
    # none at all, as every JSON route answers a missing body (it was "not valid JSON at character 1")
    if not body:
        raise invalid("body", f"Field required: {one_of}")
    try:
        payload = read_json(body)
    except json.JSONDecodeError as exc:  # where and why, as every other JSON route says it
        raise not_json(f"not valid JSON at character {exc.pos + 1}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # not UTF-8, nested too deeply, a key twice, a huge number
        raise unreadable_body(exc) from None  # a 400, as on every other JSON route
    if not isinstance(payload, dict):
        raise invalid("body", one_of)
    if unknown := sorted(payload.keys() - {"pixels", "images"}):
        raise invalid_all((f"body.{key}", f"not a field: {one_of}") for key in unknown)
    if len(payload.keys() & {"pixels", "images"}) != 1:
        raise invalid("body", one_of)
    try:
        if "pixels" in payload:
            return pixels_to_image(payload["pixels"])[None, :], True
        images = payload["images"]
        if not isinstance(images, list) or not images:
            raise invalid("images", "must be a non-empty list of images")
        if len(images) > settings.max_batch_images:
            raise invalid(
                "images",
                f"{len(images):,} images; the limit is {settings.max_batch_images:,} (MLPLAB_MAX_BATCH_IMAGES)",
            )
        stacked = np.empty((len(images), 784), dtype=np.float32)
        for i, image in enumerate(images):
            try:
                stacked[i] = pixels_to_image(image)
            except ImageError as exc:
                raise invalid(f"images.{i}", str(exc)) from None
        return stacked, False
    except ImageError as exc:
        raise invalid("pixels", str(exc)) from None


def _cut_short(content_type: str, body: bytes) -> str:
    """Why a multipart body may have shown no part: it ends before its closing boundary."""
    found = re.search(r'boundary="?([^";]+)', content_type)
    if found and f"--{found.group(1)}--".encode() not in body:
        return f", and this body ends before its closing boundary --{found.group(1)}--: is it cut short?"
    return ""


async def _images_from_upload(request: Request, body: bytes, settings: Settings, media: str) -> np.ndarray:
    """The image of an upload, whose media type (lower case: Multipart/Form-Data was decoded as one image)
    is `media`."""
    content_type = request.headers.get("content-type", "")  # whole: its boundary
    multipart = media == "multipart/form-data"
    if multipart:
        form = await request.form()
        parts = form.getlist("file")
        if len(parts) > 1:  # form.get took the last: which image answered was up to the part order
            raise invalid("file", f"{len(parts)} 'file' parts: send one image a request (JSON takes many)")
        upload = parts[0] if parts else None
        if isinstance(upload, str):  # a part without filename= is a text field to the parser
            raise invalid(
                "file",
                "the 'file' part has no filename, so it reads as text: send it as a file "
                "(curl -F file=@digit.png)",
            )
        if upload is None:
            raise invalid(
                "file",
                f"a multipart upload needs a 'file' part holding the image{_cut_short(content_type, body)}",
            )
        body = await upload.read()
    try:
        async with request.app.state.decodes.turn():
            image = await run_in_threadpool(
                preprocess_upload,
                body,
                max_bytes=settings.max_upload_bytes,
                max_pixels=settings.max_image_pixels,
            )
    except ImageError as exc:
        part = "body.file" if multipart else "body"
        raise ProblemError(
            exc.status,
            "Invalid image" if exc.status == 422 else "Content too large",
            str(exc),
            invalid_params=[{"name": part, "reason": str(exc)}],
        ) from None
    return image[None, :]


UPLOAD_RETRY_SECONDS = 2
UPLOAD_QUEUE_FULL = "Upload queue full"
UPLOAD_QUEUE_DETAIL = (
    f"{UPLOADS_WAITING} large prediction requests already wait on this API process to be read, the most it "
    f"holds. Retry in {UPLOAD_RETRY_SECONDS} s."
)
UPLOAD_SHARE = (
    f"This client already has {UPLOADS_PER_CLIENT} large prediction requests being read or waiting on this "
    f"API process, its share. Retry in {UPLOAD_RETRY_SECONDS} s."
)
DECODE_QUEUE_FULL = "Prediction queue full"
DECODE_QUEUE_DETAIL = (
    f"{DECODES_WAITING} predictions that need decoding or a large forward pass already wait on this API "
    f"process, the most it holds. Retry in {UPLOAD_RETRY_SECONDS} s."
)
DECODE_SHARE = (
    f"This client already has {DECODES_PER_CLIENT} predictions that need decoding (an image, a large JSON "
    f"batch) or a large forward pass being worked on or waiting on this API process, its share. Retry in "
    f"{UPLOAD_RETRY_SECONDS} s."
)


def upload_turns() -> AsyncTurns:
    """The turns an API process reads large predict bodies in (app.state.uploads): made per app, not a
    module global as the figure and planning turns are, since an asyncio Semaphore belongs to one loop."""
    return AsyncTurns(
        UPLOADS_AT_ONCE,
        UPLOADS_WAITING,
        UPLOAD_QUEUE_FULL,
        UPLOAD_QUEUE_DETAIL,
        UPLOAD_RETRY_SECONDS,
        UPLOADS_PER_CLIENT,
        UPLOAD_SHARE,
    )


def decode_turns() -> AsyncTurns:
    """The turns an API process decodes images and large JSON batches, and runs large forward passes, in
    (app.state.decodes), whatever the size of the body: a 24 kB PNG decodes to 4 million pixels."""
    return AsyncTurns(
        DECODES_AT_ONCE,
        DECODES_WAITING,
        DECODE_QUEUE_FULL,
        DECODE_QUEUE_DETAIL,
        UPLOAD_RETRY_SECONDS,
        DECODES_PER_CLIENT,
        DECODE_SHARE,
    )


@router.post(
    "/{model}/predict",
    response_model=PredictionPublic | PredictionsPublic,
    openapi_extra=_PREDICT_BODY,
    dependencies=[WriterDep],
    responses={
        400: problem_doc(
            "A malformed multipart body, or JSON that cannot be read (not UTF-8, nested too deeply, a key twice)"
        ),
        413: problem_doc("Body over MLPLAB_MAX_UPLOAD_BYTES"),
        415: problem_doc("Not JSON, multipart or an image"),
        429: problem_doc(f"{share_full(UPLOAD_SHARE)} Or: {DECODE_SHARE}"),
        503: problem_doc(
            f"{UPLOAD_QUEUE_FULL}: {UPLOAD_QUEUE_DETAIL} Or {DECODE_QUEUE_FULL}: {DECODE_QUEUE_DETAIL} "
            "Or the database unavailable."
        ),
    },
)
async def predict(
    ref: ModelRefDep, request: Request, inference: InferenceDep, monitoring: MonitoringDep
) -> Response:
    """Predict digits: JSON pixels (one or many), or an uploaded image (BMP, GIF, JPEG, PNG or WebP) made to
    look like MNIST."""
    settings: Settings = request.app.state.settings
    weights = await inference.weights(ref.id)  # 404 / 409 before reading a large body
    model_warning = await inference.model_warning(ref.id)
    allow_body(request.scope, settings.max_upload_bytes, "MLPLAB_MAX_UPLOAD_BYTES")
    length = request.headers.get("content-length", "")
    few = length.isdigit() and int(length) <= ON_LOOP_BYTES  # a few images: at once, as ever
    # a large body is read in its turn (its client's share): 240 uploads of 4 MB at once, each read before
    # it waited to be decoded, took the API from 820 MB to 1.76 GB, and a 137-byte upload waited 12.6 s
    async with nullcontext() if few else request.app.state.uploads.turn():
        body = await request.body()
        # none: JSON's route reads none as JSON only without a body (every other JSON route: a 415)
        declared = request.headers.get("content-type", "" if body else "application/json")
        content_type = declared.split(";")[0].strip().lower()
        if content_type == "application/json" and len(body) > ON_LOOP_BYTES:
            # many images: parsed, predicted and answered off the event loop, a few batches at once (their
            # parsed pixels are ~20x the body: 40 batches of 3,100 images at once took the API past 2 GB)
            async with request.app.state.decodes.turn():
                images, single = await run_in_threadpool(_images_from_json, body, settings)
                probs = await predict_proba(weights, images)
                profile = await inference.input_profile(weights.spec.dataset)
                answer = await run_in_threadpool(_answer, images, probs, profile, single, model_warning)
            monitoring.predicted(ref.id, ref.alias, len(images))
            answer.headers.update(ref.headers)
            return answer
        upload = content_type == "multipart/form-data" or content_type in _IMAGE_TYPES
        if content_type != "application/json" and not upload:
            raise ProblemError(
                415,
                "Unsupported media type",
                f"Content-Type {echo(content_type) if content_type else 'missing'}: send application/json, "
                f"multipart/form-data with a 'file' part, or an image as {' / '.join(_IMAGE_TYPES)}.",
            )
        if upload:
            images, single = await _images_from_upload(request, body, settings, content_type), True
        else:
            images, single = _images_from_json(body, settings)
        # a batch too large to predict inline waits for a decoding turn, as an image does
        async with nullcontext() if runs_inline(weights, len(images)) else request.app.state.decodes.turn():
            probs = await predict_proba(weights, images)
        profile = await inference.input_profile(weights.spec.dataset)
        answer = _answer(images, probs, profile, single, model_warning)
        monitoring.predicted(ref.id, ref.alias, len(images))
        answer.headers.update(ref.headers)
        return answer


ON_LOOP_BYTES = 65_536  # a JSON body past this (about 40 images) is handled off the event loop


def _answer(
    images: NDArray[np.float32],
    probs: NDArray[np.float32],
    profile: InputProfile | None,
    single: bool,
    model_warning: str | None,
) -> Response:
    """The predictions as the JSON answer: built here, so that the event loop does not validate them again."""
    results = _predictions(images, probs, profile, single)
    if single:
        return json_response(results[0].model_copy(update={"model_warning": model_warning}))
    return json_response(PredictionsPublic(data=results, count=len(results), model_warning=model_warning))


def _predictions(
    images: NDArray[np.float32], probs: NDArray[np.float32], profile: InputProfile | None, single: bool
) -> list[PredictionPublic]:
    """Each image's prediction, with what its input looks like; a single one with the image the model saw."""
    unlike = profile.unlike(images) if profile is not None else [[] for _ in images]
    return [
        PredictionPublic(
            predicted=int(p.argmax()),
            probabilities=p.tolist(),
            pixels=np.rint(image * 255).astype(int).tolist() if single else None,
            out_of_distribution=bool(reasons) if profile is not None else None,
            warning=input_warning(reasons, float(p.max())),
        )
        for image, p, reasons in zip(images, probs, unlike, strict=True)
    ]


@router.get(
    "/{model}/predictions/{split}/{index}",
    response_model=ImagePredictionPublic,
    responses=DATASET_UNAVAILABLE_DOC,
)
async def predict_split_image(
    ref: ModelRefDep,
    split: FileSplit,
    index: Annotated[int, Path(ge=0), DIGITS],
    inference: InferenceDep,
    monitoring: MonitoringDep,
) -> ImagePredictionPublic:
    """One image of a split, its label, and the model's prediction of it."""
    weights, data = await inference.model_and_data(ref.id)
    image, label = dataset_image(data, split, index)
    p = (await predict_proba(weights, image[None, :]))[0]
    model_warning = await inference.model_warning(ref.id)
    monitoring.predicted(ref.id, ref.alias, 1)
    predicted = int(p.argmax())
    use = IMAGE_USES[(await inference.image_uses(weights.spec, split, data.split(split)[1]))[index]]
    return ImagePredictionPublic(
        split=split,
        index=index,
        label=label,
        predicted=predicted,
        probabilities=p.tolist(),
        correct=predicted == label,
        use=use,
        model_warning=model_warning,
    )


@router.get(
    "/{model}/predictions/{split}",
    response_model=OutcomesPublic,
    responses=DATASET_UNAVAILABLE_DOC
    | {422: problem_doc("Invalid request, or images=validation of the test split or of a model without one")},
)
async def predictions_by_outcome(
    ref: ModelRefDep,
    split: FileSplit,
    inference: InferenceDep,
    label: Annotated[
        int | None, Query(ge=0, le=9, description="Only images of this true class"), DIGITS
    ] = None,
    predicted: Annotated[
        int | None, Query(ge=0, le=9, description="Only images predicted as this class"), DIGITS
    ] = None,
    correct: Annotated[
        bool | None, Query(description="Only images the model gets right (true) or wrong (false)")
    ] = None,
    order: Annotated[
        Literal["index", "confidence"],
        Query(
            description="'confidence': the model's most confident first (with correct=false, its worst mistakes)"
        ),
    ] = "index",
    images: Annotated[
        Literal["counted", "all", "validation"],
        Query(
            description="'counted': the images its accuracy and confusion matrix count (on train, those it "
            "trained on); 'all': every image of the split, each with its use; 'validation': the train "
            "images held out to rank it (split train only), as confusion-matrix?split=validation counts them"
        ),
    ] = "counted",
    offset: PageOffset = 0,
    limit: PageLimit = 100,
) -> OutcomesPublic:
    """Images of a split by true and predicted class: label=3&predicted=5 lists a confusion-matrix cell,
    correct=false&order=confidence the mistakes the model is surest of."""
    weights, data = await inference.model_and_data(ref.id)
    if images == "validation":
        if split != "train":
            raise invalid("query.images", "validation images are train images held out: ask split train")
        require_validation(ref.id, weights.spec, "query.images")
    labels = data.split(split)[1]
    known = await inference.split_predictions(ref.id, split)
    guesses = known.predicted
    uses = await inference.image_uses(weights.spec, split, labels)
    if images == "counted":
        keep = counted(uses)
    elif images == "validation":
        keep = uses == IMAGE_USES.index("validation")
    else:
        keep = np.ones(len(labels), dtype=bool)
    if label is not None:
        keep &= labels == label
    if predicted is not None:
        keep &= guesses == predicted
    if correct is not None:
        keep &= (guesses == labels) == correct
    indices = np.flatnonzero(keep)
    if order == "confidence":
        indices = indices[np.argsort(-known.probability[indices], kind="stable")]
    page = indices[offset : offset + limit]
    return OutcomesPublic(
        split=split,
        label=label,
        predicted=predicted,
        count=len(indices),
        data=[
            OutcomePublic(
                index=int(i),
                label=int(labels[i]),
                predicted=int(guesses[i]),
                probability=float(known.probability[i]),
                use=IMAGE_USES[uses[i]],
            )
            for i in page
        ],
        model_warning=await inference.model_warning(ref.id),  # as each image's prediction says it
    )
