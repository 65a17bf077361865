"""What the API needs to predict: trained weights, datasets, a model's predictions on a split and its
figures, kept in memory, each loaded once at a time per process and off the event loop.

A trained model never changes, so nothing cached here goes stale. Each cache is a Memo: an LRU in
front of a single flight, so twenty concurrent first requests for one model load it once and all
twenty get that one copy (docs/performance.md, "A model's first request").

Its problems are the routers': presenters.trained_model (404, 409) and errors.dataset_unavailable (503).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.api.database import Database
from service.api.presenters import require_trained, trained_model
from service.api.schemas import Split
from service.errors import dataset_unavailable
from service.ml.data import DATASETS, DataError, Dataset, load_dataset
from service.ml.evaluation import SplitPredictions, decode_predictions
from service.ml.weights import Weights, load_weights
from service.settings import Settings
from service.store.queries import get_predictions

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

FIGURES_CACHED = 128  # PNGs of a few tens of kB each
CHUNK = 1024  # images per forward pass when looking for a model's first mistakes
INLINE_MACS = 10_000_000  # a forward pass this small is cheaper on the event loop than a thread hop


class LRU(Generic[K, V]):
    """A small thread-safe least-recently-used map."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)


class Memo(Generic[K, V]):
    """An LRU whose misses are loaded once at a time per key: concurrent callers await the same load.

    The load runs as its own task, so a caller that goes away (a closed connection) does not cancel it
    for the others; a load that fails fails for every caller waiting on it, and is tried again next time.
    """

    def __init__(self, maxsize: int):
        self.cache: LRU[K, V] = LRU(maxsize)
        self._loading: dict[K, asyncio.Task[V]] = {}

    def peek(self, key: K) -> V | None:
        """The cached value, without loading it."""
        return self.cache.get(key)

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


def _retrieve(task: asyncio.Task[object]) -> None:
    # Mark a failed load's exception as seen: when every caller went away, nobody else awaits it.
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True)
class Predictions:
    """A model's output on every image of a split."""

    probabilities: NDArray[np.float32]  # (images, classes)
    labels: NDArray[np.intp]  # the predicted class of each image


class Inference:
    """The API process's trained models, datasets, predictions on a split and figures."""

    def __init__(self, database: Database, settings: Settings):
        self.database = database
        self.settings = settings
        self.models: Memo[int, Weights] = Memo(settings.model_cache_size)
        self.datasets: Memo[str, Dataset] = Memo(len(DATASETS))
        # a split's probabilities are at most 60,000 x 10 float32 (2.4 MB)
        self.predictions: Memo[tuple[int, Split], Predictions] = Memo(4 * settings.model_cache_size)
        self.figures: Memo[tuple[object, ...], bytes] = Memo(FIGURES_CACHED)
        # what the worker stored with each model: a predicted class and its probability per image
        self.stored: Memo[tuple[int, Split], SplitPredictions] = Memo(4 * settings.model_cache_size)

    async def weights(self, job_id: int) -> Weights:
        """The model's weights: 404 for an unknown id, 409 for a job not trained."""
        return await self.models.get(job_id, lambda: self.database.run(_load_weights, job_id))

    async def dataset(self, name: str) -> Dataset:
        """The dataset, decoded once per process; 503 when its files are missing or damaged."""
        return await self.datasets.get(name, lambda: run_in_threadpool(self._load_dataset, name))

    def _load_dataset(self, name: str) -> Dataset:
        try:
            return load_dataset(name, self.settings.data_dir, download=self.settings.download)
        except DataError as exc:
            raise dataset_unavailable(name, exc) from exc

    async def model_and_data(self, job_id: int) -> tuple[Weights, Dataset]:
        """The model's weights and the dataset it was trained on."""
        weights = await self.weights(job_id)
        return weights, await self.dataset(weights.spec.dataset)

    def cached_predictions(self, job_id: int, split: Split) -> Predictions | None:
        """The model's predictions on the split if this process has them, without computing them."""
        return self.predictions.peek((job_id, split))

    async def split_predictions(self, job_id: int, split: Split) -> Predictions:
        """The model's predictions on every image of the split: computed once, then cached."""

        async def compute() -> Predictions:
            weights, data = await self.model_and_data(job_id)
            return await run_in_threadpool(predict_split, weights, data.split(split).images)

        return await self.predictions.get((job_id, split), compute)

    async def stored_labels(self, job_id: int, split: Split) -> NDArray[np.intp] | None:
        """The predicted class of every image as the worker stored it with the model (no forward pass);
        None for a model stored before predictions were; 404 / 409 as weights()."""
        found = self.stored.peek((job_id, split))
        if found is None:
            found = await self.database.run(_load_stored, job_id, split)
            if found is None:
                return None
            self.stored.cache.put((job_id, split), found)
        return found.predicted.astype(np.intp)

    async def predicted_labels(self, job_id: int, split: Split) -> NDArray[np.intp]:
        """The model's predicted class for every image of a split: what this process computed, else what
        the worker stored, else computed here once."""
        known = self.predictions.peek((job_id, split))
        if known is not None:
            return known.labels
        stored = await self.stored_labels(job_id, split)
        return stored if stored is not None else (await self.split_predictions(job_id, split)).labels

    async def figure(self, key: tuple[object, ...], draw: Callable[[], Awaitable[bytes]]) -> bytes:
        """A figure's PNG, drawn once per key (the key names everything the figure depends on)."""
        return await self.figures.get(key, draw)


async def predict_proba(weights: Weights, images: NDArray[np.float32]) -> NDArray[np.float32]:
    """Class probabilities of a few images inline, of many (or of a large network) in the thread pool."""
    if len(images) * weights.spec.n_parameters <= INLINE_MACS:
        return weights.predict_proba(images)
    return await run_in_threadpool(weights.predict_proba, images)


def _load_weights(session: Session, job_id: int) -> Weights:
    return load_weights(trained_model(session, job_id).weights)


def _load_stored(session: Session, job_id: int, split: Split) -> SplitPredictions | None:
    blob = get_predictions(session, job_id, split)
    if blob is None:
        require_trained(session, job_id)  # 404 or 409; else a model stored before predictions were
        return None
    return decode_predictions(blob)


def predict_split(weights: Weights, images: NDArray[np.float32]) -> Predictions:
    probabilities = weights.predict_proba(images)
    return Predictions(probabilities, probabilities.argmax(axis=1))


def first_mistakes(
    weights: Weights, images: NDArray[np.float32], truth: NDArray[np.int64], limit: int
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """The indices of the first `limit` images the model gets wrong, and what it predicts for them.

    Chunk by chunk, stopping once `limit` are found: the cost is that of the images read, not the split's.
    """
    found: list[NDArray[np.intp]] = []
    guesses: list[NDArray[np.intp]] = []
    count = 0
    for start in range(0, len(images), CHUNK):
        predicted = weights.predict_proba(images[start : start + CHUNK]).argmax(axis=1)
        wrong = np.flatnonzero(predicted != truth[start : start + CHUNK])[: limit - count]
        found.append(wrong + start)
        guesses.append(predicted[wrong])
        count += len(wrong)
        if count >= limit:
            break
    empty = np.empty(0, dtype=np.intp)
    return np.concatenate([empty, *found]), np.concatenate([empty, *guesses])
