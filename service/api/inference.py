"""What the API needs to predict: trained weights, datasets, a model's predictions on a split and its
figures, kept in memory, each loaded once at a time per process and off the event loop.

A trained model never changes, so nothing cached by id goes stale; what an alias names may, so
Inference.resolve asks the database again after MLPLAB_ALIAS_CACHE_SECONDS. Each cache is a Memo: an LRU in
front of a single flight, so twenty concurrent first requests for one model load it once and all
twenty get that one copy (docs/reliability.md, the twenty concurrent first requests). A split's predictions are
those the worker stored with the model (service.ml.evaluation), computed here only for older models.

Its problems are the routers': presenters.trained_model (404, 409) and errors.dataset_unavailable (503).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Generic

import numpy as np
from fastapi import Query
from numpy.typing import NDArray
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.api.database import Database
from service.api.presenters import job_warning, require_trained, resolve_alias, trained_model
from service.api.schemas import EvalSplit
from service.errors import ProblemError, Responses, dataset_unavailable, invalid, problem_doc
from service.lru import LRU, K, V
from service.ml.data import DATASETS, DataError, Dataset, Labels, load_dataset
from service.ml.evaluation import SplitPredictions, decode_predictions, predictions_of
from service.ml.familiar import InputProfile
from service.ml.metrics import confusion_matrix
from service.ml.spec import SplitName, TrainSpec
from service.ml.splits import IMAGE_USES, image_uses
from service.ml.weights import Weights, load_weights
from service.settings import Settings
from service.store.queries import get_predictions, job_spec, trained_datasets

log = logging.getLogger("mlplab.api")

FIGURES_CACHED = 128  # PNGs of a few tens of kB each
EXPORTS_CACHED = 4  # ONNX graphs, each as large as its model's weights (megabytes)
USES_CACHED = 32  # image_uses arrays, a byte an image: 60 kB each for a training split
CHUNK = 1024  # images per forward pass when looking for a model's first mistakes
INLINE_MACS = 10_000_000  # a forward pass this small is cheaper on the event loop than a thread hop


class Memo(Generic[K, V]):
    """An LRU whose misses are loaded once at a time per key: concurrent callers await the same load.

    The load runs as its own task, so a caller that goes away (a closed connection) does not cancel it
    for the others; a load that fails fails for every caller waiting on it, and is tried again next time.
    """

    def __init__(self, maxsize: int, max_weight: int | None = None, weigh: Callable[[V], int] | None = None):
        self.cache: LRU[K, V] = LRU(maxsize, max_weight, weigh)
        self._loading: dict[K, asyncio.Task[V]] = {}

    def peek(self, key: K) -> V | None:
        """The cached value, without loading it."""
        return self.cache.get(key)

    def loading(self, key: K) -> bool:
        """Whether a load of `key` is under way (a caller now would wait for it, adding no work)."""
        return key in self._loading

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        value = self.cache.get(key)
        if value is not None:
            return value
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load(key, load))
            self._loading[key] = task
            task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def _load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        try:
            value = await load()
            self.cache.put(key, value)
            return value
        finally:
            del self._loading[key]


def _nbytes(weights: Weights) -> int:
    return sum(W.nbytes + b.nbytes for W, b in weights.params)


def _retrieve(task: asyncio.Task[object]) -> None:
    # Mark a failed load's exception as seen: when every caller went away, nobody else awaits it.
    if not task.cancelled():
        task.exception()


class Inference:
    """The API process's trained models, datasets, predictions on a split and figures."""

    def __init__(self, database: Database, settings: Settings):
        self.database = database
        self.settings = settings
        # by count and by bytes: 16 of the largest networks held 1.3 GB, pinned by any reader
        budget = settings.model_cache_mb * 2**20
        self.models: Memo[int, Weights] = Memo(settings.model_cache_size, budget, _nbytes)
        self.datasets: Memo[str, Dataset] = Memo(len(DATASETS))
        # (job_id, split) -> each image's predicted class and its probability (5 bytes an image)
        self.predictions: Memo[tuple[int, SplitName], SplitPredictions] = Memo(4 * settings.model_cache_size)
        self.figures: Memo[tuple[object, ...], bytes] = Memo(FIGURES_CACHED)
        self.exports: Memo[int, bytes] = Memo(EXPORTS_CACHED, budget, len)  # job_id -> its ONNX graph
        # job_id -> (its near-chance warning or None,): in a 1-tuple, as a Memo reads None as "not cached"
        self.warnings: Memo[int, tuple[str | None]] = Memo(settings.model_cache_size)
        self.profiles: Memo[str, InputProfile] = Memo(len(DATASETS))
        # (dataset, split, validation_size, train_limit) -> each image's use (splits.image_uses): a byte
        # an image, computed in 2 ms, where a single image's prediction takes a fraction of one
        self.uses: Memo[tuple[object, ...], NDArray[np.int8]] = Memo(USES_CACHED)
        # alias -> (time.monotonic() when the query that found it began, model id; None once moved here)
        self.aliases: dict[str, tuple[float, int | None]] = {}
        self._aliases_lock = threading.Lock()  # forget() runs in the threadpool, resolve() in the event loop

    async def resolve(self, alias: str) -> int:
        """The id of the model the alias names (404 when there is none), as the database said at most
        MLPLAB_ALIAS_CACHE_SECONDS ago; what it names is then cached by id like any model."""
        asked = time.monotonic()
        known = self.aliases.get(alias)
        if (
            known is not None
            and known[1] is not None
            and asked - known[0] < self.settings.alias_cache_seconds
        ):
            return known[1]
        model_id = await self.database.run(resolve_alias, alias)
        with self._aliases_lock:
            latest = self.aliases.get(alias)
            if (
                latest is None or latest[0] < asked
            ):  # an answer to an earlier query never replaces a later one
                self.aliases[alias] = (asked, model_id)
        return model_id

    def forget(self, alias: str) -> None:
        """This process moved the alias: its next request asks the database again, and an answer to a
        query that began before now is not kept."""
        with self._aliases_lock:
            self.aliases[alias] = (time.monotonic(), None)

    async def weights(self, job_id: int) -> Weights:
        """The model's weights: 404 for an unknown id, 409 for a job not trained."""
        return await self.models.get(job_id, lambda: self.database.run(_load_weights, job_id))

    async def model_warning(self, job_id: int) -> str | None:
        """A trained model's near-chance warning (presenters.job_warning): its predictions mean little."""
        (warning,) = await self.warnings.get(job_id, lambda: self.database.run(_model_warning, job_id))
        return warning

    async def onnx(self, job_id: int) -> bytes:
        """The model as an ONNX graph, exported once while it is among the last few asked for."""
        weights = await self.weights(job_id)
        return await self.exports.get(job_id, lambda: run_in_threadpool(_export_onnx, weights))

    async def image_uses(self, spec: TrainSpec, split: SplitName, labels: Labels) -> NDArray[np.int8]:
        """What the model of `spec` did with each image of the split (`labels`, its dataset's)."""
        key = (spec.dataset, split, spec.validation_size, spec.train_limit)
        return await self.uses.get(key, lambda: run_in_threadpool(image_uses, labels, spec, split))

    async def dataset(self, name: str) -> Dataset:
        """The dataset, decoded once per process; 503 when its files are missing or damaged."""
        return await self.datasets.get(name, lambda: run_in_threadpool(self._load_dataset, name))

    def _load_dataset(self, name: str) -> Dataset:
        try:
            return load_dataset(name, self.settings.data_dir, download=self.settings.download)
        except DataError as exc:
            raise dataset_unavailable(name, exc) from exc

    async def input_profile(self, name: str) -> InputProfile | None:
        """What the dataset's training images measure (service.ml.familiar), once per process; None when
        its files cannot be read: a prediction then says nothing of its input rather than fail."""
        try:
            data = await self.dataset(name)
        except ProblemError:
            return None
        return await self.profiles.get(
            name, lambda: run_in_threadpool(InputProfile.of, data.split("train").images)
        )

    async def warm(self) -> None:
        """Decode the datasets the trained models use, and their input profiles, before the API
        serves: the first predictions after a start would otherwise all wait a second or two for them."""
        try:
            for name in await self.database.run(trained_datasets):
                # the dataset too; None (and the request's own 503 later) when it is missing
                await self.input_profile(name)
        except Exception:  # only a head start: the requests load what they need themselves
            log.exception("could not warm the inference caches")

    async def model_and_data(self, job_id: int) -> tuple[Weights, Dataset]:
        """The model's weights and the dataset it was trained on."""
        weights = await self.weights(job_id)
        return weights, await self.dataset(weights.spec.dataset)

    async def known_predictions(self, job_id: int, split: SplitName) -> SplitPredictions | None:
        """The model's predictions on the split if they are known without computing them: kept by this
        process, or stored by the worker with the model; None for a model stored before that."""
        known = self.predictions.peek((job_id, split))
        if known is None:
            known = await self.database.run(_stored_predictions, job_id, split)
            if known is not None:
                self.predictions.cache.put((job_id, split), known)
        return known

    async def split_predictions(self, job_id: int, split: SplitName) -> SplitPredictions:
        """Each image's predicted class and its probability, as the worker stored them with the model
        (computed here, once, for a model stored before that); 404 / 409 as weights()."""

        async def load() -> SplitPredictions:
            stored = await self.database.run(_stored_predictions, job_id, split)
            if stored is not None:
                return stored
            weights, data = await self.model_and_data(job_id)
            return await run_in_threadpool(_predict, weights, data.split(split).images)

        return await self.predictions.get((job_id, split), load)

    async def predicted_labels(self, job_id: int, split: SplitName) -> NDArray[np.uint8]:
        """The model's predicted class for every image of a split."""
        return (await self.split_predictions(job_id, split)).predicted

    async def confusion(self, job_id: int, split: EvalSplit) -> tuple[TrainSpec, list[list[int]]]:
        """The model's spec and confusion matrix of a split: train's and test's as stored, validation's
        counted from the stored predictions of train."""
        # no session held across the predictions' read, which takes a database slot of its own
        spec, stored = await self.database.run(_stored_matrix, job_id, split)
        if stored is not None:
            return spec, stored
        require_validation(job_id, spec, "query.split")
        labels = (await self.dataset(spec.dataset)).split("train").labels
        held = await self.image_uses(spec, "train", labels) == IMAGE_USES.index("validation")  # memoised
        predicted = (await self.split_predictions(job_id, "train")).predicted
        return spec, confusion_matrix(labels[held], predicted[held]).tolist()

    async def figure(self, key: tuple[object, ...], draw: Callable[[], Awaitable[bytes]]) -> bytes:
        """A figure's PNG, drawn once per key (the key names everything the figure depends on)."""
        return await self.figures.get(key, draw)


def runs_inline(weights: Weights, images: int) -> bool:
    """Whether a forward pass of so many images is cheap enough for the event loop (a few, a small network)."""
    return images * weights.spec.n_parameters <= INLINE_MACS


async def predict_proba(weights: Weights, images: NDArray[np.float32]) -> NDArray[np.float32]:
    """Class probabilities of a few images inline, of many (or of a large network) in the thread pool;
    409 when they are not finite (a model stored before training checked its outputs)."""
    if runs_inline(weights, len(images)):
        probs = weights.predict_proba(images)
    else:
        probs = await run_in_threadpool(weights.predict_proba, images)
    if not np.isfinite(probs).all():  # JSON would carry them as null, beside an argmax of class 0
        raise ProblemError(
            409,
            "Model outputs not finite",
            "This model's outputs for this input overflow (its probabilities are NaN): its weights, finite, "
            "are too large for its activations. Train it again with a smaller learning_rate.",
        )
    return probs


# The split a model's figures and scores are read on: validation, the train images it held out.
SplitQuery = Annotated[
    EvalSplit, Query(description="validation: the images held out of train, which ranked the model")
]
NO_VALIDATION_DOC: Responses = {
    422: problem_doc("Invalid request, or split=validation of a model without a validation split")
}


def require_validation(job_id: int, spec: TrainSpec, field: str) -> None:
    """422 at `field` for a model that held no train images out for validation."""
    if not spec.validation_size:
        raise invalid(field, f"model {job_id} has no validation split (validation_size 0)")


def _stored_matrix(
    session: Session, job_id: int, split: EvalSplit
) -> tuple[TrainSpec, list[list[int]] | None]:
    """The model's spec and its stored confusion matrix of train or test (None for validation)."""
    model = trained_model(session, job_id)
    stored = {"test": model.confusion_test, "train": model.confusion_train}.get(split)
    return job_spec(model.job), stored


def _model_warning(session: Session, job_id: int) -> tuple[str | None]:
    return (job_warning(require_trained(session, job_id)),)


def _export_onnx(weights: Weights) -> bytes:
    from service.ml.onnx_export import export_onnx  # onnx loads on the first export, not at start-up

    return export_onnx(weights)


def _load_weights(session: Session, job_id: int) -> Weights:
    return load_weights(trained_model(session, job_id).weights)


def _stored_predictions(session: Session, job_id: int, split: SplitName) -> SplitPredictions | None:
    blob = get_predictions(session, job_id, split)
    if blob is None:
        require_trained(session, job_id)  # 404 or 409; else a model stored before predictions were
        return None
    return decode_predictions(blob)


def _predict(weights: Weights, images: NDArray[np.float32]) -> SplitPredictions:
    return predictions_of(weights.predict_proba(images))


def first_mistakes(
    weights: Weights,
    images: NDArray[np.float32],
    truth: NDArray[np.int64],
    rows: NDArray[np.int64],
    limit: int,
) -> tuple[NDArray[np.int64], NDArray[np.intp]]:
    """The first `limit` of these rows of the split that the model gets wrong, and what it predicts for them.

    Chunk by chunk, stopping once `limit` are found: the cost is that of the images read, not the split's.
    """
    found: list[NDArray[np.int64]] = []
    guesses: list[NDArray[np.intp]] = []
    count = 0
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        predicted = weights.predict_proba(images[chunk]).argmax(axis=1)
        wrong = np.flatnonzero(predicted != truth[chunk])[: limit - count]
        found.append(chunk[wrong])
        guesses.append(predicted[wrong])
        count += len(wrong)
        if count >= limit:
            break
    return np.concatenate([np.empty(0, np.int64), *found]), np.concatenate([np.empty(0, np.intp), *guesses])
