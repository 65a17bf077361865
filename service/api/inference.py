"""What the API needs to predict: trained weights and datasets, kept in memory, loaded off the event loop.

Its problems are the routers': presenters.trained_model (404, 409) and errors.dataset_unavailable (503).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

import numpy as np
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from service.api.presenters import trained_model
from service.api.schemas import Split
from service.errors import dataset_unavailable
from service.ml.data import DataError, Dataset, load_dataset
from service.ml.weights import Weights, load_weights
from service.settings import Settings
from service.store.db import session_scope

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


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


class Inference:
    """Trained models are immutable once stored, so a cached one never goes stale."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings, slots: asyncio.Semaphore):
        self.factory = factory
        self.settings = settings
        self.slots = slots  # the API's database slots (main.py): a load opens a session
        self.models: LRU[int, Weights] = LRU(settings.model_cache_size)
        self.datasets: dict[str, Dataset] = {}
        # (job_id, split) -> the predicted class of each image of the split
        self.predictions: LRU[tuple[int, Split], np.ndarray] = LRU(4 * settings.model_cache_size)

    def _load(self, job_id: int) -> Weights:
        with session_scope(self.factory) as session:
            return load_weights(trained_model(session, job_id).weights)

    async def weights(self, job_id: int) -> Weights:
        """The model's weights: 404 for an unknown id, 409 for a job not trained."""
        weights = self.models.get(job_id)
        if weights is None:
            async with self.slots:
                weights = await run_in_threadpool(self._load, job_id)
            self.models.put(job_id, weights)
        return weights

    async def model_and_data(self, job_id: int) -> tuple[Weights, Dataset]:
        """The model's weights and the dataset it was trained on."""
        weights = await self.weights(job_id)
        return weights, await self.dataset(weights.spec.dataset)

    def _load_dataset(self, name: str) -> Dataset:
        try:
            return load_dataset(name, self.settings.data_dir, download=self.settings.download)
        except DataError as exc:
            raise dataset_unavailable(name, exc) from exc

    async def dataset(self, name: str) -> Dataset:
        """The dataset, decoded once per process; 503 when its files are missing or damaged."""
        if name not in self.datasets:  # the first load decodes the files: off the event loop
            self.datasets[name] = await run_in_threadpool(self._load_dataset, name)
        return self.datasets[name]

    async def predicted_labels(self, job_id: int, split: Split) -> np.ndarray:
        """The model's predicted class for every image of a split (computed once, then cached)."""
        labels = self.predictions.get((job_id, split))
        if labels is None:
            weights, data = await self.model_and_data(job_id)
            images, _ = data.split(split)
            labels = await run_in_threadpool(_predicted, weights, images)
            self.predictions.put((job_id, split), labels)
        return labels


def _predicted(weights: Weights, images: np.ndarray) -> np.ndarray:
    return np.asarray(weights.predict_proba(images).argmax(axis=1))
