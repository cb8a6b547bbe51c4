"""Rate limits per endpoint, counted with the ``limits`` library.

Each limited endpoint allows ``requests`` per ``per_seconds`` for one key: the
client's address (an IPv6 client counts per /64 network, the block one subscriber
gets) or the API key it authenticated with. The counting is limits' sliding-window
counter (two counters per key: no burst at a window's edge, constant memory).

The counters live in this process (``memory``) or in Redis (a ``redis://`` URL), where
every replica of the service shares them (keys ``<prefix><service>.ratelimit:...``);
``auto``, the default, is the service's own Redis when it runs on Redis, else memory.
In memory, at most ``max_clients`` keys are counted per endpoint: beyond that the
least recently seen key is forgotten, so memory stays bounded whatever the number of
clients (a forgotten client starts afresh; in Redis, keys expire with their window).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import anyio
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import ConfigurationError, StorageError

from .errors import RateLimited, SettingsError, Unavailable
from .logs import MaskedLogger

__all__ = ["RateLimit", "RateLimitStore", "RateLimiter", "client_key"]

KeyKind = Literal["client", "api_key"]
#: longest wait for the shared counters before the request is answered 503
SHARED_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` per ``per_seconds``, per client or per API key."""

    requests: int
    per_seconds: int
    key: KeyKind = "client"

    def __post_init__(self) -> None:
        if self.requests < 1 or self.per_seconds < 1:
            raise ValueError(
                f"a rate limit needs positive numbers, got {self.requests}/"
                f"{self.per_seconds}"
            )

    @classmethod
    def parse(cls, text: str, key: KeyKind = "client") -> RateLimit:
        """``"100/60"``: 100 requests per 60 seconds."""
        requests, _, seconds = text.partition("/")
        return cls(int(requests), int(seconds), key)

    def __str__(self) -> str:
        return f"{self.requests} per {self.per_seconds} s"


def client_key(address: str) -> str:
    """What one client is counted by: its address, or its /64 for IPv6."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


class RateLimitStore:
    """Where one service's counters live; makes a ``RateLimiter`` per endpoint."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        log: MaskedLogger,
        max_clients: int = 10_000,
        prefix: str = "",
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.log = log
        self.max_clients = max_clients
        self.shared = url != "memory"
        self.storage: Storage
        if self.shared:
            try:
                self.storage = RedisStorage(
                    "async+" + url,
                    implementation="redispy",
                    key_prefix=f"{prefix}{namespace}.ratelimit",
                    wrap_exceptions=True,
                )
            except ConfigurationError as exc:  # the redis package is missing
                raise SettingsError(
                    f"{namespace.upper()}_RATE_LIMIT_STORAGE: {exc}"
                ) from None
        else:
            self.storage = MemoryStorage()

    def limiter(self, endpoint: str, limit: RateLimit) -> RateLimiter:
        """The limiter of ``endpoint``."""
        return RateLimiter(self, endpoint, limit)


class RateLimiter:
    """Counts one endpoint's requests per key; refuses those over the limit."""

    def __init__(self, store: RateLimitStore, endpoint: str, limit: RateLimit) -> None:
        self.store = store
        self.endpoint = endpoint
        self.limit = limit
        self.item: RateLimitItem = RateLimitItemPerSecond(
            limit.requests, limit.per_seconds
        )
        self.strategy = SlidingWindowCounterRateLimiter(store.storage)
        #: the keys counted in memory, least recently seen first
        self.tracked: OrderedDict[str, None] = OrderedDict()

    async def hit(self, key: str) -> None:
        """Count a request for ``key``; raises ``RateLimited`` over the limit.

        Raises ``Unavailable`` (503) when the shared counters cannot be reached:
        refusing is safer than letting everything through.
        """
        identifiers = (self.store.namespace, self.endpoint, key)
        if not self.store.shared:
            await self._track(key)
            if await self.strategy.hit(self.item, *identifiers):
                return
            stats = await self.strategy.get_window_stats(self.item, *identifiers)
        else:
            try:
                with anyio.fail_after(SHARED_TIMEOUT_S):
                    if await self.strategy.hit(self.item, *identifiers):
                        return
                    stats = await self.strategy.get_window_stats(
                        self.item, *identifiers
                    )
            except (StorageError, OSError, TimeoutError) as exc:
                self.store.log.warning(
                    "rate limit storage unavailable: %s",
                    type(exc).__name__,
                    exc_info=exc,
                )
                raise Unavailable(
                    "the rate limit cannot be checked now; retry"
                ) from None
        wait = math.ceil(stats.reset_time - time.time())
        raise RateLimited(
            f"more than {self.limit.requests} requests in {self.limit.per_seconds} s",
            min(max(1, wait), self.limit.per_seconds),
        )

    async def _track(self, key: str) -> None:
        tracked = self.tracked
        if key in tracked:
            tracked.move_to_end(key)
            return
        tracked[key] = None
        if len(tracked) > self.store.max_clients:
            forgotten, _ = tracked.popitem(last=False)
            await self.strategy.clear(
                self.item, self.store.namespace, self.endpoint, forgotten
            )
