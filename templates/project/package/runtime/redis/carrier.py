"""The Redis transport's carrier: one ``RedisLink`` per service, its connections."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..dedup import Dedup
from ..errors import SettingsError
from ..logs import MaskedLogger
from ..ports import InputPort, OutputPort, Overflow
from ..settings import ServiceSettings
from .broadcast import BroadcastConnection
from .connection import RedisConnection
from .dedup import RedisDedup
from .link import CLUSTER_SCHEMES, RedisLink
from .partitioned import PartitionedConnection
from .partitions import DEFAULT_PARTITIONS
from .replicas import announcement

__all__ = ["RedisCarrier"]

#: the URL schemes redis-py connects with
SCHEMES = ("redis://", "rediss://", "unix://", *CLUSTER_SCHEMES)


class RedisCarrier:
    """Connections carried by Redis streams, and the service's link to Redis."""

    def __init__(
        self, service: str, settings: ServiceSettings, log: MaskedLogger
    ) -> None:
        self.service = service
        self.settings = settings
        self.link = RedisLink(service, settings, log)

    @property
    def problem(self) -> str | None:
        """Why Redis cannot be used right now (None: it can)."""
        return self.link.problem

    @property
    def shared_storage(self) -> str | None:
        """The Redis URL: every replica's rate limits count there (not on a
        cluster, where each replica counts its own)."""
        return None if self.link.cluster else self.settings.redis_url

    def connect(
        self,
        source: OutputPort,
        target: InputPort,
        *,
        buffer_size: int,
        overflow: Overflow,
        key: Callable[[Any], object] | None = None,
        partitions: int | None = None,
    ) -> RedisConnection:
        """A connection carried by the stream of ``source``; a keyed one (``key``)
        by ``partitions`` streams (``DEFAULT_PARTITIONS`` when None)."""
        if getattr(target, "broadcast", False):
            # every replica reads the whole stream (a websocket_out: broadcast.py)
            return BroadcastConnection(
                source,
                target,
                buffer_size=buffer_size,
                overflow=overflow,
                link=self.link,
            )
        if key is not None:
            return PartitionedConnection(
                source,
                target,
                buffer_size=buffer_size,
                overflow=overflow,
                link=self.link,
                partitions=partitions or DEFAULT_PARTITIONS,
            )
        return RedisConnection(
            source, target, buffer_size=buffer_size, overflow=overflow, link=self.link
        )

    def check(self) -> None:
        """The Redis URL must be one redis-py connects with."""
        if not self.settings.redis_url.startswith(SCHEMES):
            raise SettingsError(
                f"{self.service.upper()}_REDIS_URL must start with redis://, "
                "rediss://, unix:// or, for a Redis Cluster, redis+cluster:// or "
                "rediss+cluster://"
            )

    def dedup(self) -> Dedup:
        """Keys in Redis, shared by every replica."""
        # The lease ends when the message would be claimed again anyway.
        return RedisDedup(
            self.link,
            self.link.key("dedup") + ".",
            ttl_s=self.settings.dedup_ttl_s,
            lease_s=self.settings.redis_claim_idle_ms / 1000,
        )

    async def monitor(self, url: str | None, components: list[str]) -> None:
        """Ping Redis every second; a replica that serves HTTP lists itself too."""
        record = None if url is None else announcement(self.link, url, components)
        await self.link.monitor(record)

    async def close(self) -> None:
        """Withdraw this replica's record, close the client."""
        await self.link.close()
