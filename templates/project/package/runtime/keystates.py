"""The states of one component's keys, least recently used first, at most
``max_keys`` of them: plain synchronous code under ``Stateful`` (``keyedstate``),
and under its Redis store (``redis/statestore``), which keeps them per partition.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

__all__ = ["KeyedState"]

# what ``KeyedState.checkout`` finds for a key it does not hold
_NEW = object()


class KeyedState:
    """One component's state per key, least recently used first, at most
    ``max_keys`` of them."""

    def __init__(self, initial: Callable[[], Any], max_keys: int) -> None:
        self.initial = initial
        self.max_keys = max_keys
        self._values: OrderedDict[object, Any] = OrderedDict()
        # blocking user code runs in worker threads: the order of the keys and
        # the eviction change together
        self._lock = threading.Lock()
        #: keys dropped at the cap
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._values)

    def checkout(self, key: object) -> Any:
        """A copy of ``key``'s state for the method (its initial state when new)."""
        values = self._values
        with self._lock:
            value = values.get(key, _NEW)
            if value is not _NEW:
                values.move_to_end(key)
        if value is _NEW:
            return self.initial()
        if isinstance(value, BaseModel):
            return value.model_copy(deep=True)
        return copy.deepcopy(value)

    def keep(self, key: object, value: Any, item: object = None) -> bool:
        """Keep ``value`` as ``key``'s state, left by ``item``; True when a key was
        evicted for it."""
        values = self._values
        with self._lock:
            evicting = key not in values and len(values) >= self.max_keys
            if evicting:
                values.popitem(last=False)
                self.evicted += 1
            values[key] = value
            values.move_to_end(key)
        return evicting

    def get(self, key: object) -> Any:
        """``key``'s state as kept (None: none kept); for tests and inspection."""
        return self._values.get(key)
