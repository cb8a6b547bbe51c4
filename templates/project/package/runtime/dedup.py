"""Apply an effect once per key: what ``Component.once`` uses.

A transport that delivers a message at least once (Redis) may show a sink the same
message again (same message id) after a replica died or a delivery failed.
``once(key, effect)`` runs ``effect`` only if it has not run for ``key`` yet. This
module holds the contract (``Dedup``) and the in-process keys (``MemoryDedup``); a
transport shared by replicas brings its own (``redis.dedup``).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from time import monotonic
from typing import Any

from .errors import ServiceError

__all__ = ["Dedup", "DedupBusy", "MemoryDedup", "apply"]


class DedupBusy(ServiceError):
    """Another delivery of the same message is applying its effect right now."""


class Dedup(ABC):
    """Remembers which keys had their effect applied."""

    @abstractmethod
    async def once(self, key: str, effect: Callable[[], Any]) -> bool:
        """Run ``effect`` (sync or async) unless ``key`` was done; whether it ran."""


async def apply(effect: Callable[[], Any]) -> None:
    """Run ``effect``, awaiting what it returns if that is awaitable."""
    result = effect()
    if inspect.isawaitable(result):
        await result


class MemoryDedup(Dedup):
    """Keys in this process's memory, each kept for ``ttl_s`` after its effect."""

    def __init__(self, ttl_s: float = 86_400.0) -> None:
        self.ttl_s = ttl_s
        self._done: dict[str, float] = {}
        self._busy: set[str] = set()
        self._added = 0

    async def once(self, key: str, effect: Callable[[], Any]) -> bool:
        """Run ``effect`` unless ``key`` was done within ``ttl_s``."""
        now = monotonic()
        expires = self._done.get(key)
        if expires is not None and expires > now:
            return False
        if key in self._busy:
            raise DedupBusy(f"the effect for {key!r} is being applied right now")
        self._busy.add(key)
        try:
            await apply(effect)
        finally:
            self._busy.discard(key)
        self._done[key] = now + self.ttl_s
        self._added += 1
        if self._added >= 1024:  # forget expired keys now and then, not per call
            self._added = 0
            self._done = {k: t for k, t in self._done.items() if t > now}
        return True
