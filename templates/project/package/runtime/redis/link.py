"""The service's Redis client: stream and key names, health, calls that survive outages.

Every Redis call of the transport goes through ``RedisLink.call``: while Redis is
unreachable it retries with backoff (50 ms doubling to 2 s), ``/ready`` says why the
service is not ready (``problem``), and nothing is dropped: senders wait, receivers
keep what they hold.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import anyio
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..logs import MaskedLogger
from ..settings import ServiceSettings
from .wire import FIELD

__all__ = ["CLUSTER_SCHEMES", "UNREACHABLE", "RedisLink", "StreamId", "stream_id"]

T = TypeVar("T")
#: errors that mean "Redis is not reachable now": retried, never fatal
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 2.0
#: how long a replica's record lives unless renewed (the ping renews it every second)
RECORD_TTL_S = 10
StreamId = tuple[int, int]
#: a URL that starts so names a Redis Cluster (any of its nodes): the service uses
#: redis-py's cluster client, and every stream's name is a hash tag of its own
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
#: XADD of every argument to the stream (field ``FIELD``), as one command: one reply
#: to parse instead of one per entry; a pipeline of XADDs cost redis-py most of a
#: hop's CPU. Returns the last entry's id.
ADD_ENTRIES = f"""
local id
for i = 1, #ARGV do
  id = redis.call('XADD', KEYS[1], '*', '{FIELD.decode()}', ARGV[i])
end
return id
"""

#: ``ADD_ENTRIES`` under ``max_lag``: ARGV is the number of bounded consumer groups,
#: each group's name and bound, then the entries. It adds only as many as every
#: bounded group has room for (its unread entries plus its pending ones stay within
#: its bound), creating a bounded group that does not exist yet at the stream's start
#: (so the bound holds before its first reader); when Redis cannot tell a group's
#: lag (entries deleted out of order), the stream's length stands in for it.
#: Returns ``{added, last id or false}``: what was not added waits in the outbox.
ADD_BOUNDED = f"""
local bounded = tonumber(ARGV[1])
local first = 2 + 2 * bounded
local room = #ARGV - first + 1
local known = {{}}
local length = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  length = redis.call('XLEN', KEYS[1])
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local info = {{}}
    for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
    local used = length
    if info['lag'] then used = info['lag'] + info['pending'] end
    known[info['name']] = used
  end
end
for i = 0, bounded - 1 do
  local name = ARGV[2 + 2 * i]
  local used = known[name]
  if used == nil then
    redis.call('XGROUP', 'CREATE', KEYS[1], name, '0', 'MKSTREAM')
    used = length
  end
  room = math.min(room, tonumber(ARGV[3 + 2 * i]) - used)
end
local id = false
for i = first, first + room - 1 do
  id = redis.call('XADD', KEYS[1], '*', '{FIELD.decode()}', ARGV[i])
end
if room < 0 then room = 0 end
return {{room, id}}
"""


def stream_id(raw: bytes | str) -> StreamId:
    """``b"1714564800000-3"`` -> ``(1714564800000, 3)``, comparable."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class RedisLink:
    """The service's Redis client: names, health, and calls that survive outages."""

    def __init__(
        self, service: str, settings: ServiceSettings, log: MaskedLogger
    ) -> None:
        self.service = service
        self.settings = settings
        self.prefix = settings.redis_prefix
        self.consumer = settings.redis_consumer or (
            f"{socket.gethostname()}-{os.getpid()}"
        )
        self.log = log
        self.where = _redacted(settings.redis_url)
        #: on a Redis Cluster (``CLUSTER_SCHEMES``)
        self.cluster = settings.redis_url.startswith(CLUSTER_SCHEMES)
        #: why Redis cannot be used right now (``None``: it can)
        self.problem: str | None = f"redis at {self.where}: not connected yet"
        self._client: redis.asyncio.Redis | None = None
        self._add_entries: AsyncScript | None = None
        self._add_bounded: AsyncScript | None = None
        self._outage_logged = False
        #: the key of this replica's record, while it keeps one (``monitor``)
        self.announced: str | None = None

    @property
    def client(self) -> redis.asyncio.Redis:
        """The client (created on first use, inside the running event loop)."""
        if self._client is None:
            options: dict[str, Any] = {
                "retry": Retry(NoBackoff(), 0),  # retried here, with backoff
                "socket_connect_timeout": 2.0,
                # longer than the longest blocking read (1 s): a silent peer is dead
                "socket_timeout": 6.0,
            }
            if self.cluster:
                url = self.settings.redis_url.replace("+cluster", "", 1)
                # The cluster client has the same commands, scripts and pipelines
                # (each routed by its keys' slot): the transport uses it as one.
                self._client = cast(
                    redis.asyncio.Redis, RedisCluster.from_url(url, **options)
                )
            else:
                self._client = redis.asyncio.Redis.from_url(
                    self.settings.redis_url, **options
                )
        return self._client

    @property
    def add_entries(self) -> AsyncScript:
        """``ADD_ENTRIES``, loaded on first use (and again after Redis restarted)."""
        if self._add_entries is None:
            self._add_entries = self.client.register_script(ADD_ENTRIES)
        return self._add_entries

    @property
    def add_bounded(self) -> AsyncScript:
        """``ADD_BOUNDED``, loaded on first use (and again after Redis restarted)."""
        if self._add_bounded is None:
            self._add_bounded = self.client.register_script(ADD_BOUNDED)
        return self._add_bounded

    def stream(self, component: str, port: str) -> str:
        """The stream an output port writes: ``<prefix><service>.<component>.<port>``;
        on a cluster in braces, a hash tag, so that its dead-letter stream (its name
        and ``.dlq``) is in the same slot and one transaction moves entries between
        them."""
        name = f"{self.prefix}{self.service}.{component}.{port}"
        return "{" + name + "}" if self.cluster else name

    def tagged(self, tag: str, rest: str) -> str:
        """A stream that shares its slot with others on a cluster:
        ``{<prefix><service>.<tag>}.<rest>`` (the partition ``p`` of both inputs of
        a join: tag ``<join>.p<n>``, so that one script reaches both); on one
        Redis, as ``stream`` names it (``<prefix><service>.<rest>``)."""
        if not self.cluster:
            return f"{self.prefix}{self.service}.{rest}"
        return "{" + f"{self.prefix}{self.service}.{tag}" + "}." + rest

    def key(self, name: str) -> str:
        """Another key of this service: ``<prefix><service>.<name>``."""
        return f"{self.prefix}{self.service}.{name}"

    async def call(self, command: Callable[[], Awaitable[T]]) -> T:
        """``await command()``, retried with backoff while Redis is unreachable."""
        delay = BACKOFF_FIRST_S
        while True:
            try:
                result = await command()
            except UNREACHABLE as exc:
                self._down(exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            if self.problem is not None:
                self._up()
            return result

    async def monitor(self, announce: tuple[str, bytes] | None = None) -> None:
        """Ping Redis every second, so ``/ready`` follows it even when idle.

        ``announce`` (a key and its value): this replica's record, which the ping
        writes instead (expiring after ``RECORD_TTL_S``), so that it is listed
        while it lives; ``close`` deletes it.
        """
        command: Callable[[], Awaitable[Any]] = self.client.ping
        if announce is not None:
            command = partial(self.client.set, *announce, ex=RECORD_TTL_S)
            self.announced = announce[0]
        while True:
            await self.call(command)
            await anyio.sleep(1.0)

    async def close(self) -> None:
        """Withdraw this replica's record (when Redis answers), close the client."""
        if self._client is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                if self.announced is not None and self.problem is None:
                    with contextlib.suppress(*UNREACHABLE):  # else it expires
                        await self._client.delete(self.announced)
                    self.announced = None
                await self._client.aclose()
            self._client = None
            self._add_entries = None
            self._add_bounded = None

    def _down(self, exc: BaseException) -> None:
        if not self._outage_logged:  # once per outage, not once per retry
            self._outage_logged = True
            self.log.error(
                "redis at %s is unreachable (%s: %s); retrying",
                self.where,
                type(exc).__name__,
                exc,
            )
        self.problem = f"redis at {self.where} is unreachable ({type(exc).__name__})"

    def _up(self) -> None:
        if self._outage_logged:
            self._outage_logged = False
            self.log.info("redis at %s is reachable again", self.where)
        self.problem = None


def _redacted(url: str) -> str:
    """``redis://:secret@host:6379/0`` -> ``host:6379/0``: no password in logs."""
    parts = urlsplit(url.replace("+cluster://", "://", 1))
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path}"
