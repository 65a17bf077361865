"""What the API needs to predict: trained weights and datasets, kept in memory, loaded off the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict

import numpy as np
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from service.errors import ProblemError, not_found, not_trained
from service.ml.data import DataError, Dataset, load_dataset
from service.ml.weights import Weights, load_weights
from service.settings import Settings
from service.store.db import session_scope
from service.store.queries import get_job, get_model


class LRU:
    """A small thread-safe least-recently-used map."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key, value) -> None:
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
        self.models = LRU(settings.model_cache_size)
        self.datasets: dict[str, Dataset] = {}
        self.predictions = LRU(4 * settings.model_cache_size)  # (job_id, split) -> predicted labels

    def _load(self, job_id: int) -> Weights:
        with session_scope(self.factory) as session:
            model = get_model(session, job_id)
            if model is None:
                job = get_job(session, job_id)
                if job is None:
                    raise not_found("model", job_id)
                raise not_trained(job_id, job.status)
            return load_weights(model.weights)

    async def weights(self, job_id: int) -> Weights:
        weights = self.models.get(job_id)
        if weights is None:
            async with self.slots:
                weights = await run_in_threadpool(self._load, job_id)
            self.models.put(job_id, weights)
        return weights

    def dataset_sync(self, name: str) -> Dataset:
        try:
            return load_dataset(name, self.settings.data_dir, download=self.settings.download)
        except DataError as exc:
            raise ProblemError(503, "Dataset unavailable", str(exc)) from exc

    async def dataset(self, name: str) -> Dataset:
        if name not in self.datasets:  # the first load decodes the files: off the event loop
            self.datasets[name] = await run_in_threadpool(self.dataset_sync, name)
        return self.datasets[name]

    async def predicted_labels(self, job_id: int, split: str) -> np.ndarray:
        """The model's predicted class for every image of a split (computed once, then cached)."""
        labels = self.predictions.get((job_id, split))
        if labels is None:
            weights = await self.weights(job_id)
            images, _ = (await self.dataset(weights.spec.dataset)).split(split)
            labels = await run_in_threadpool(lambda: weights.predict_proba(images).argmax(axis=1))
            self.predictions.put((job_id, split), labels)
        return labels
