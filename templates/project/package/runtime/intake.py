"""The input loop of a stateful component: a connection's entries, a batch at a time.

A stateful component (``joins.py``, ``windows.py`` in memory) folds items into
state synchronously, so it takes whatever is buffered at once (up to ``limit``)
instead of one ``receive`` per item, and hands each batch to ``handle``. The
port's age and message counts are kept here, as the other kinds' loops keep them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from operator import itemgetter
from time import monotonic

from anyio import EndOfStream, WouldBlock
from anyio.lowlevel import checkpoint

from .envelope import Entry
from .ports import Connection, InputPort

__all__ = ["intake"]

_STAMP = itemgetter(0)  # an entry's enqueue time


async def intake(
    port: InputPort,
    connection: Connection,
    limit: int,
    handle: Callable[[list[Entry]], Awaitable[None]],
) -> None:
    """Hand every entry of ``connection`` to ``handle``, in batches of at most
    ``limit``, until the connection ends."""
    take, clock = connection.take, monotonic
    age, counts = port.age, port.latency.counts
    async with connection.receiving() as receiver:
        while True:
            batch = take(limit)
            if not batch:
                try:
                    batch = [receiver.receive_nowait()]
                except WouldBlock:
                    try:
                        batch = [await receiver.receive()]
                    except EndOfStream:
                        return
                    batch += take(limit - 1)
                except EndOfStream:
                    return
            age.observe_since(clock(), list(map(_STAMP, batch)))
            counts[0] += len(batch)  # no user method to time (see metrics)
            await handle(batch)
            await checkpoint()
