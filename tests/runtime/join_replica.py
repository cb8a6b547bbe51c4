"""The joined service of tests/runtime/test_runtime_join_redis.py, and a replica.

``orders`` and ``payments`` (keyed by ``account``, fixed event times) -> keyed Redis
connections (``PARTITIONS`` each) -> ``pairs`` (an interval join, its state per
partition in Redis) -> Redis -> ``keep`` (the pairs), ``lonely_orders`` and
``lonely_payments`` (the items never paired). The test runs the sources and sinks
in its own process (``build``); each replica of ``pairs`` is this script, a process
of its own:

    python join_replica.py URL PREFIX CONSUMER LEASE_TTL_MS

``JOIN_REPLICA_DIE=<step>:<n>`` makes the replica kill itself (SIGKILL) at a step of
its ``n``-th commit that acknowledges entries: ``before`` (the batch added to the
state here, its script not run) or ``after`` (the script ran: state,
acknowledgements and outputs in Redis).

It needs ``templates/project/package`` on ``PYTHONPATH`` (the runtime).
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import datetime
from typing import Any

import anyio
import runtime
from pydantic import BaseModel
from runtime.redis import joinstore

from tests.runtime.partition_replica import Drop, Nothing, settings_for

PARTITIONS = 4
#: how far apart (s) an order and a payment of one account may be to pair
WITHIN_S = 0.2
#: far more than the events' span: nothing is late or expires while they flow,
#: whatever order the two inputs' partitions are read in (the pairs are then
#: exactly the nested loop's); a last item per partition, far later, expires them
GRACE_S = 100_000.0


class Order(BaseModel):
    """One order of one account, at a fixed time."""

    account: str
    seq: int
    at: datetime


class Payment(BaseModel):
    """One payment of one account, at a fixed time."""

    account: str
    seq: int
    at: datetime


class Pair(BaseModel):
    """An order and a payment of one account, near in time."""

    account: str
    order: int
    payment: int


class Pairs(runtime.Join):
    """The join: a pair names its order and its payment."""

    def match(self, left: Order, right: Payment) -> Pair:
        return Pair(account=left.account, order=left.seq, payment=right.seq)


def build(
    settings: runtime.ServiceSettings,
    orders: runtime.Source | None = None,
    payments: runtime.Source | None = None,
    sinks: dict[str, runtime.Sink] | None = None,
) -> runtime.Service:
    """The service; the sources and sinks only matter where they run."""
    sinks = sinks or {}
    service = runtime.Service("jr", settings=settings)
    service.add(orders or Nothing("orders", Order))
    service.add(payments or Nothing("payments", Payment))
    service.add(
        Pairs(
            "pairs",
            within=WITHIN_S,
            time="at",
            grace=GRACE_S,
            schema=Pair,
            unmatched=True,
            inputs={"left": Order, "right": Payment},
        )
    )
    for name, schema in (
        ("keep", Pair),
        ("lonely_orders", Order),
        ("lonely_payments", Payment),
    ):
        service.add(sinks.get(name) or Drop(name, schema))
    for source, port in (("orders", "left"), ("payments", "right")):
        service.connect(
            f"{source}.out",
            f"pairs.{port}",
            transport="redis",
            key="account",
            partitions=PARTITIONS,
            buffer_size=256,
        )
    for port, sink in (
        ("out", "keep"),
        ("unmatched_left", "lonely_orders"),
        ("unmatched_right", "lonely_payments"),
    ):
        service.connect(f"pairs.{port}", f"{sink}.in", transport="redis")
    return service


def _die_at(spec: str) -> None:
    """Kill this process at the step ``spec`` names (see the module)."""
    step, _, number = spec.partition(":")
    target = int(number or "1")
    seen = [0]
    commit = joinstore.JoinStore._commit

    async def dying_commit(self: Any, part: Any, changes: Any) -> bool:
        entries = bool(changes.entries["left"] or changes.entries["right"])
        seen[0] += entries
        now = entries and seen[0] == target
        if now and step == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        ok: bool = await commit(self, part, changes)
        if now and step == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return ok

    joinstore.JoinStore._commit = dying_commit  # type: ignore[method-assign]


def main() -> None:
    url, prefix, consumer, ttl_ms = sys.argv[1:5]
    if die := os.environ.get("JOIN_REPLICA_DIE"):
        _die_at(die)
    service = build(settings_for(url, prefix, consumer, int(ttl_ms), "pairs"))

    async def run() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(service.run)
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    service.stop()
                    break

    anyio.run(run)


if __name__ == "__main__":
    main()
