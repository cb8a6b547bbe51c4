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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from .errors import ServiceError, SettingsError

if TYPE_CHECKING:
    from .service import Service
    from .streams import RedisLink

__all__ = ["TTL_S", "announcement", "file_sd", "key", "record", "replicas", "run"]

#: a replica not heard of for this long is no longer listed (it renews every second)
TTL_S = 10
#: how long the command waits for an unreachable Redis before it gives up
UNREACHABLE_S = 10.0


def record(service: Service, url: str) -> dict[str, Any]:
    """What a replica says about itself."""
    return {
        "replica": service.redis.consumer if service.redis else str(os.getpid()),
        "url": url,
        "components": [c.name for c in service.local_components()],
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def announcement(service: Service, url: str) -> tuple[str, bytes]:
    """The key and value of this replica's record (the service must use Redis)."""
    assert service.redis is not None
    return key(service.redis, service.redis.consumer), orjson.dumps(
        record(service, url)
    )


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


async def run(
    service: Service, *, as_file_sd: bool = False, echo: Callable[[str], None] = print
) -> int:
    """``python -m <service> replicas``: print the live replicas; the exit code."""
    link = service.redis
    if link is None:
        raise SettingsError(
            f"service {service.name!r} carries no connection by redis, so it runs as "
            "one process: its log says where it serves"
        )
    try:
        with anyio.move_on_after(UNREACHABLE_S):
            await link.call(link.client.ping)
        if link.problem is not None:
            raise ServiceError(f"{link.problem}; cannot list the replicas")
        found = await replicas(link)
    finally:
        await link.close()
    if as_file_sd:
        echo(file_sd(service.name, found).decode())
        return 0
    for replica in found:
        components = ",".join(replica["components"])
        echo(f"{replica['url']}  {replica['replica']}  {components}")
    return 0
