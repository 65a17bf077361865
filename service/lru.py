"""A small thread-safe least-recently-used map: the caches of what never changes (the API's, a study's decisions)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most `maxsize` items and, with `weigh`, at most `max_weight` of their weight (bytes) but the
    newest, which is kept whatever it weighs."""

    def __init__(self, maxsize: int, max_weight: int | None = None, weigh: Callable[[V], int] | None = None):
        self.maxsize = maxsize
        self.max_weight, self.weigh = max_weight, weigh
        self.weight = 0
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
            if key in self._items:
                self.weight -= self._weight(self._items[key])
            self._items[key] = value
            self.weight += self._weight(value)
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize or (
                self.max_weight is not None and self.weight > self.max_weight and len(self._items) > 1
            ):
                self.weight -= self._weight(self._items.popitem(last=False)[1])

    def _weight(self, value: V) -> int:
        return 0 if self.weigh is None else self.weigh(value)
