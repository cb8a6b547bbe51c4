"""The windowed service of tests/runtime/test_runtime_window_redis.py, and a replica.

``events`` (keyed by ``account``, fixed event times) -> keyed Redis connection
(``partitions``) -> ``counts`` (a count per account, its state per partition in
Redis: in tumbling windows of ``SIZE_S``, or, shape ``count``, in windows of
``COUNT`` items, or, shape ``sliding``, in sliding windows of ``SLIDE_S``) ->
Redis -> ``keep``. The test runs ``events`` and ``keep`` in its own process
(``build``); each replica of ``counts`` is this script, a process of its own:

    python window_replica.py URL PREFIX CONSUMER LEASE_TTL_MS PARTITIONS SHAPE

``WINDOW_REPLICA_DIE=<step>:<n>`` makes the replica kill itself (SIGKILL) at a step
of its ``n``-th commit or load: ``before`` (the batch added to the windows here, its
script not run), ``after`` (the script ran: state, acknowledgements and results in
Redis), ``load`` (a partition's lease taken, its state not loaded yet).

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
from runtime.redis import windowstore

from tests.runtime.partition_replica import Drop, Nothing, settings_for

#: the windows' size and how long a quiet partition waits before its watermark
#: moves on (s): the last windows close by idleness once the events stop
SIZE_S = 5.0
IDLE_S = 2.0
#: the items of a key that make a window of shape ``count``
COUNT = 7
#: the size of a ``sliding`` window (s): one per item, holding its key's items of
#: the ``SLIDE_S`` before it (a few: the tests' keys have an item every 0.2 s)
SLIDE_S = 0.5
#: the window's shapes: tumbling (``SIZE_S``, closed by time), count (``COUNT``)
#: or sliding (``SLIDE_S``, closed by time, its recent items kept in Redis too)
SHAPES = ("tumbling", "count", "sliding")


class Event(BaseModel):
    """One event of one account, at a fixed time."""

    account: str
    seq: int
    at: datetime


class Counted(BaseModel):
    """A window's count."""

    key: str
    start: datetime
    end: datetime
    value: int


def build(
    settings: runtime.ServiceSettings,
    partitions: int,
    events: runtime.Source | None = None,
    keep: runtime.Sink | None = None,
    shape: str = "tumbling",
) -> runtime.Service:
    """The service; ``events`` and ``keep`` only matter where they run."""
    service = runtime.Service("wr", settings=settings)
    service.add(events or Nothing("events", Event))
    size: dict[str, Any] = {"size": SIZE_S, "idle_after": IDLE_S}
    if shape == "count":
        size = {"count": COUNT}
    elif shape == "sliding":
        size = {"type": "sliding", "size": SLIDE_S, "idle_after": IDLE_S}
    service.add(
        runtime.Window(
            "counts", time="at", schema=Counted, inputs={"in": Event}, **size
        )
    )
    service.add(keep or Drop("keep", Counted))
    service.connect(
        "events.out",
        "counts.in",
        transport="redis",
        key="account",
        partitions=partitions,
        buffer_size=256,
    )
    service.connect("counts.out", "keep.in", transport="redis", buffer_size=256)
    return service


def _die_at(spec: str) -> None:
    """Kill this process at the step ``spec`` names (see the module)."""
    step, _, number = spec.partition(":")
    target = int(number or "1")
    seen = {"commit": 0, "load": 0}
    commit, load = windowstore.WindowStore._commit, windowstore.WindowStore.load

    async def dying_commit(self: Any, part: Any, changes: Any) -> bool:
        if changes.entries:
            seen["commit"] += 1
        now = seen["commit"] == target and bool(changes.entries)
        if now and step == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        ok: bool = await commit(self, part, changes)
        if now and step == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return ok

    async def dying_load(self: Any, lease: Any) -> None:
        seen["load"] += 1
        if step == "load" and seen["load"] == target:
            os.kill(os.getpid(), signal.SIGKILL)
        await load(self, lease)

    windowstore.WindowStore._commit = dying_commit  # type: ignore[method-assign]
    windowstore.WindowStore.load = dying_load  # type: ignore[method-assign]


def main() -> None:
    url, prefix, consumer, ttl_ms, partitions, shape = sys.argv[1:7]
    if die := os.environ.get("WINDOW_REPLICA_DIE"):
        _die_at(die)
    settings = settings_for(url, prefix, consumer, int(ttl_ms), "counts")
    service = build(settings, int(partitions), shape=shape)

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
