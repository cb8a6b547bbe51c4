"""Where each replica of a service serves ``/health``, ``/ready`` and ``/metrics``.

A replica served on a port (``python -m <service>``) whose service uses Redis keeps a
key ``<prefix><service>.replica.<consumer>`` (JSON: its URL, components, host, pid)
that expires ``TTL_S`` seconds after it was last renewed; the ping that tracks Redis
renews it, and a replica that stops gracefully deletes it. ``python -m <service>
replicas`` prints them; ``--file-sd`` prints them as a Prometheus ``file_sd_configs``
target file, one target per replica labelled with its name and components.

The replicas that read a keyed connection (``partitioned``) are also members of its
consumer group: a sorted set ``<prefix><service>.members.<component>.<port>``, each
member's score the Redis time (ms) at which it expires unless it beats again
(``heartbeat``, one script: it drops the expired members and answers the live ones,
so every replica sees the same list by the same clock, Redis's).
"""

from __future__ import annotations

import os
import socket
from typing import Any

import orjson

from .link import RECORD_TTL_S, RedisLink

__all__ = [
    "HEARTBEAT",
    "TTL_S",
    "announcement",
    "file_sd",
    "heartbeat",
    "key",
    "live_members",
    "members_key",
    "record",
    "replicas",
]

#: a replica not heard of for this long is no longer listed (it renews every second)
TTL_S = RECORD_TTL_S


#: KEYS: the members' set; ARGV: member, ttl ms (0: it leaves). The live members.
HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl * 10)
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


#: KEYS: the members' set. The live members, changing nothing.
LIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"""


async def live_members(link: RedisLink, group: str) -> list[str]:
    """The members of ``group`` whose last beat has not expired, sorted."""
    members = await link.client.eval(LIVE, 1, members_key(link, group))
    return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)


def members_key(link: RedisLink, group: str) -> str:
    """The members of consumer group ``group`` (``component.port``)."""
    return link.key(f"members.{group}")


async def heartbeat(link: RedisLink, group: str, ttl_ms: int) -> list[str]:
    """Say this replica reads ``group`` for ``ttl_ms`` more (0: no longer); the live
    members, sorted. One attempt: the caller retries."""
    client = link.client
    members = await client.eval(
        HEARTBEAT, 1, members_key(link, group), link.consumer, str(ttl_ms)
    )
    return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)


def record(link: RedisLink, url: str, components: list[str]) -> dict[str, Any]:
    """What a replica says about itself."""
    return {
        "replica": link.consumer,
        "url": url,
        "components": components,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def announcement(link: RedisLink, url: str, components: list[str]) -> tuple[str, bytes]:
    """The key and value of this replica's record."""
    return key(link, link.consumer), orjson.dumps(record(link, url, components))


def key(link: RedisLink, replica: str) -> str:
    """The key a replica keeps: ``<prefix><service>.replica.<name>``."""
    return link.key(f"replica.{replica}")


async def replicas(link: RedisLink) -> list[dict[str, Any]]:
    """Every live replica's record, by name."""
    client = link.client
    pattern = key(link, "*")
    names = sorted([k async for k in client.scan_iter(match=pattern, count=1000)])
    found = []
    for name in names:
        value = await client.get(name)
        if value is not None:  # expired between the scan and the read
            found.append(orjson.loads(value))
    return found


def file_sd(service: str, found: list[dict[str, Any]]) -> bytes:
    """The replicas as a Prometheus ``file_sd_configs`` target file (JSON)."""
    groups = []
    for replica in found:
        address = str(replica["url"]).split("://", 1)[-1]
        groups.append(
            {
                "targets": [address],
                "labels": {
                    "service": service,
                    "replica": replica["replica"],
                    "components": ",".join(replica["components"]),
                },
            }
        )
    return orjson.dumps(groups, option=orjson.OPT_INDENT_2)
