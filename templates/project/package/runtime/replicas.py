"""``python -m <service> replicas``: where each replica serves, for people and
Prometheus. What a replica's record is and how it is kept: ``redis.replicas``.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from .errors import ServiceError, SettingsError
from .redis.carrier import RedisCarrier
from .redis.replicas import file_sd, replicas
from .service import Service

__all__ = ["run"]

#: how long the command waits for an unreachable Redis before it gives up
UNREACHABLE_S = 10.0


async def run(
    service: Service, *, as_file_sd: bool = False, echo: Callable[[str], None] = print
) -> int:
    """``python -m <service> replicas``: print the live replicas; the exit code."""
    carrier = service.carriers.get("redis")
    link = carrier.link if isinstance(carrier, RedisCarrier) else None
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
