"""Where each replica of a service serves ``/health``, ``/ready`` and ``/metrics``.

A replica served on a port (``python -m <service>``) whose service uses Redis keeps a
key ``<prefix><service>.replica.<consumer>`` (JSON: its URL, components, host, pid)
that expires ``TTL_S`` seconds after it was last renewed; the ping that tracks Redis
renews it, and a replica that stops gracefully deletes it. ``python -m <service>
replicas`` prints them; ``--file-sd`` prints them as a Prometheus ``file_sd_configs``
target file, one target per replica labelled with its name and components.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import orjson

from .link import RECORD_TTL_S, RedisLink

__all__ = ["TTL_S", "announcement", "file_sd", "key", "record", "replicas"]

#: a replica not heard of for this long is no longer listed (it renews every second)
TTL_S = RECORD_TTL_S


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
