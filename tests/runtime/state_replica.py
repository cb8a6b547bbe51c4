"""The stateful service of tests/runtime/test_runtime_state_redis.py, and a replica.

``events`` (keyed by ``account``) -> keyed Redis connection (``partitions``) ->
``counter`` (``self.state``: a count per account, kept per partition in Redis;
each item leaves as ``Numbered`` with its account's count so far) -> Redis ->
``keep``. The test runs ``events`` and ``keep`` in its own process (``build``);
each replica of ``counter`` is this script, a process of its own:

    python state_replica.py URL PREFIX CONSUMER LEASE_TTL_MS PARTITIONS

``STATE_REPLICA_DIE=<step>:<n>`` makes the replica kill itself (SIGKILL) at its
``n``-th acknowledging script that writes state: ``before`` (items counted here,
the script not run: before the outputs were in it, their outputs were already
written at this instant) or ``after`` (the script ran: acknowledgements, states and
outputs in Redis, or parked in the outbox on a Cluster).

It needs ``templates/project/package`` on ``PYTHONPATH`` (the runtime).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import anyio
import runtime
from pydantic import BaseModel
from runtime.redis import statestore

from tests.runtime.partition_replica import Drop, Nothing, settings_for


class Event(BaseModel):
    """One event of one account."""

    account: str
    seq: int


class Numbered(BaseModel):
    """An event and its account's count once it was counted."""

    account: str
    seq: int
    n: int


class Count(BaseModel):
    """A key's state."""

    n: int = 0


class Counter(runtime.Stateful[Count], runtime.Transformer):
    """Counts each account's events (its state: ``Count``)."""

    state_type = Count

    def __init__(self, name: str) -> None:
        super().__init__(name, inputs={"in": Event}, outputs={"out": Numbered})

    def transform(self, item: Event) -> Numbered:
        self.state.n += 1
        return Numbered(account=item.account, seq=item.seq, n=self.state.n)


def build(
    settings: runtime.ServiceSettings,
    partitions: int,
    events: runtime.Source | None = None,
    keep: runtime.Sink | None = None,
) -> runtime.Service:
    """The service; ``events`` and ``keep`` only matter where they run."""
    service = runtime.Service("sr", settings=settings)
    service.add(events or Nothing("events", Event))
    service.add(Counter("counter"))
    service.add(keep or Drop("keep", Numbered))
    service.connect(
        "events.out",
        "counter.in",
        transport="redis",
        key="account",
        partitions=partitions,
        buffer_size=256,
    )
    service.connect("counter.out", "keep.in", transport="redis", buffer_size=256)
    return service


def _die_at(spec: str) -> None:
    """Kill this process at the step ``spec`` names (see the module)."""
    step, _, number = spec.partition(":")
    target = int(number or "1")
    seen = [0]
    acknowledge = statestore.RedisKeyedState.acknowledge

    async def dying(self: Any, *args: Any) -> Any:
        writes = args[5]
        now = False
        if any(i in writes for i in args[4]):
            seen[0] += 1
            now = seen[0] == target
        if now and step == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        acked = await acknowledge(self, *args)
        if now and step == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return acked

    statestore.RedisKeyedState.acknowledge = dying  # type: ignore[method-assign]


def main() -> None:
    url, prefix, consumer, ttl_ms, partitions = sys.argv[1:6]
    if die := os.environ.get("STATE_REPLICA_DIE"):
        _die_at(die)
    settings = settings_for(url, prefix, consumer, int(ttl_ms), "counter")
    service = build(settings, int(partitions))

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
