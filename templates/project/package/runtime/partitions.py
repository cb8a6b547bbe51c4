"""``python -m <service> partitions``: who owns each partition of the service's keyed
connections over Redis, under which lease, and how far behind its group is. What a
partition, a lease and the assignment are: ``redis.partitioned``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from .errors import ServiceError, SettingsError
from .redis.carrier import RedisCarrier
from .redis.partitioned import PartitionedConnection
from .service import Service

__all__ = ["run"]

#: how long the command waits for an unreachable Redis before it gives up
UNREACHABLE_S = 10.0
COLUMNS = ("partition", "assigned", "owner", "token", "ttl_ms", "lag", "pending")


async def run(service: Service, *, echo: Callable[[str], None] = print) -> int:
    """Print each keyed connection's partitions; the exit code."""
    carrier = service.carriers.get("redis")
    keyed = [c for c in service.connections if isinstance(c, PartitionedConnection)]
    if not isinstance(carrier, RedisCarrier) or not keyed:
        raise SettingsError(
            f"service {service.name!r} has no keyed connection carried by redis, so "
            "it has no partitions"
        )
    link = carrier.link
    try:
        with anyio.move_on_after(UNREACHABLE_S):
            await link.call(link.client.ping)
        if link.problem is not None:
            raise ServiceError(f"{link.problem}; cannot read the partitions")
        surveys = [(c, await c.survey()) for c in keyed]
    finally:
        await link.close()
    for connection, survey in surveys:
        echo(
            f"{connection.source.address} -> {connection.target.address}: "
            f"{connection.partitions} partitions, group {connection.group}, "
            f"members: {', '.join(survey['members']) or 'none'}"
        )
        echo("  " + "  ".join(COLUMNS))
        for row in survey["partitions"]:
            echo("  " + "  ".join(_cell(row[column]) for column in COLUMNS))
    return 0


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)
