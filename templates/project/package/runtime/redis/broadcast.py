"""A connection every replica of its receiver reads whole: a ``websocket_out``'s.

A consumer group shares a stream's entries among the replicas of the component
that reads it; that is right for work, wrong for live clients: a client connected
to one replica would see only that replica's share. So each replica reads the
stream on its own position (``XREAD``, no group), starting after the newest entry
when it starts reading: what was written before is not replayed to live clients.
Nothing is acknowledged; a replica that stops loses nothing anyone else needed.

The stream is still trimmed: the connection keeps a group of its input port's name
(``<component>.<port>``) that nobody reads with, whose position every replica moves
to the **lowest** position among the live replicas (each records its own in the
hash ``<stream>.broadcast`` every beat; a record older than ``claim_idle_ms`` is a
replica that stopped, and is forgotten). Trimming goes by the groups' positions
(``RedisConnection._trim``), so an entry is dropped only once every live replica
has read it, and the groups of the port's other connections hold it as before.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from pydantic import ValidationError
from redis.exceptions import ResponseError

from ..envelope import Entry
from ..ports import InputPort, OutputPort, Overflow
from .connection import READ_BATCH, TRIM_EVERY, RedisConnection
from .link import RedisLink, StreamId, stream_id
from .wire import FIELD, TARGET, WireError, decode

__all__ = ["POSITIONS_SUFFIX", "BroadcastConnection"]

#: the hash of each replica's position: ``<stream>.broadcast``
POSITIONS_SUFFIX = ".broadcast"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id(position: StreamId) -> str:
    return f"{position[0]}-{position[1]}"


class BroadcastConnection(RedisConnection):
    """The stream of ``source``, read whole by each replica that runs ``target``."""

    # one reader per replica reads the stream in order: each key's items keep it
    keeps_key_order = True

    def __init__(
        self,
        source: OutputPort,
        target: InputPort,
        *,
        buffer_size: int,
        overflow: Overflow,
        link: RedisLink,
    ) -> None:
        super().__init__(
            source, target, buffer_size=buffer_size, overflow=overflow, link=link
        )
        self.positions = self.stream + POSITIONS_SUFFIX
        #: the last entry this replica read (or the newest when it started)
        self.position: StreamId | None = None
        self.skipped = 0  # entries that could not be decoded: logged, not retried

    def __repr__(self) -> str:
        return (
            f"BroadcastConnection({self.source.address} -> {self.target.address}, "
            f"stream={self.stream!r})"
        )

    def open(self) -> None:
        """Prepare the ends; nothing received here is acknowledged."""
        super().open()
        if self.receiving_here:
            self.settled = None

    async def _add_group(self) -> None:
        """The trimming group, and this replica's start: after the newest entry."""
        client = self.link.client
        try:
            await client.xgroup_create(self.stream, self.group, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        if self.position is None:
            newest: Any = await client.xrevrange(self.stream, count=1)
            self.position = stream_id(newest[0][0]) if newest else (0, 0)
            # what was written before is not read here: the reader is past it
            self._last_read = max(self._last_read, self.position)
            await self._record_position()

    async def _read_until_finished(self, feed: MemoryObjectSendStream[Entry]) -> None:
        while not self._finished():
            entries = await self._read_on()
            for entry_id, fields in entries:
                self.position = stream_id(entry_id)
                self._last_read = max(self._last_read, self.position)
                await self._hand_on(feed, entry_id, fields)

    async def _read_on(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        client = self.link.client
        count = max(1, min(self.buffer_size - self.depth(), READ_BATCH))
        block_ms = max(10, int(self._interval * 1000))
        start = _id(self.position or (0, 0))
        answer = await self._until_finished(
            lambda: client.xread({self.stream: start}, count=count, block=block_ms)
        )
        return [entry for _, entries in answer or () for entry in entries]

    async def _hand_on(
        self,
        feed: MemoryObjectSendStream[Entry],
        entry_id: bytes,
        fields: dict[bytes, bytes],
    ) -> None:
        target = fields.get(TARGET)
        if target is not None and target.decode() != self.group:
            return  # replayed from a dead-letter stream for another input port
        try:
            entry = decode(fields.get(FIELD, b""), self.source.schema)
        except (WireError, ValidationError) as exc:
            self.skipped += 1
            self.link.log.error(
                "%s: entry %s of %s skipped: %s",
                self.group,
                entry_id.decode(),
                self.stream,
                exc,
            )
            return
        try:
            feed.send_nowait(entry)
        except anyio.WouldBlock:
            await feed.send(entry)

    async def _maintain(self) -> None:
        """Record this replica's position, move the group to the lowest live one,
        trim what every group has passed."""
        rounds = 0
        while True:
            await anyio.sleep(self._interval)
            try:
                await self._record_position()
                await self._move_group()
                if rounds % TRIM_EVERY == 0:
                    await self._trim()
            except ResponseError as exc:
                await self._refused(exc)
            except Exception as exc:  # housekeeping must never stop the component
                self.link.log.error(
                    "%s: housekeeping of %s failed: %s",
                    self.group,
                    self.stream,
                    exc,
                    exc_info=exc,
                )
            rounds += 1

    async def _record_position(self) -> None:
        if self.position is None:
            return
        value = f"{_id(self.position)} {int(time.time() * 1000)}"
        await self.link.call(
            lambda: self.link.client.hset(self.positions, self.link.consumer, value)
        )

    async def _move_group(self) -> None:
        """Set the group's position to the lowest live replica's."""
        client = self.link.client
        records = await self.link.call(lambda: client.hgetall(self.positions))
        oldest_ms = time.time() * 1000 - self.link.settings.redis_claim_idle_ms
        live: list[StreamId] = []
        gone: list[Any] = []
        for consumer, value in records.items():
            position, _, at = _text(value).partition(" ")
            if int(at or 0) < oldest_ms:
                gone.append(consumer)
            else:
                live.append(stream_id(position))
        if gone:
            await self.link.call(lambda: client.hdel(self.positions, *gone))
        if live:
            lowest = _id(min(live))
            await self.link.call(
                lambda: client.xgroup_setid(self.stream, self.group, lowest)
            )

    async def _leave(self) -> None:
        """Forget this replica's position: it no longer holds the trimming back."""
        if self.link.problem is not None:
            return
        try:
            await self.link.client.hdel(self.positions, self.link.consumer)
        except Exception:  # only tidying up; the record expires anyway
            return

    def stream_stats(self) -> dict[str, Any] | None:
        """What the metrics read: nothing pending, ever; entries skipped."""
        stats = super().stream_stats()
        if stats is not None:
            stats["pending"] = 0
            stats["dead_lettered"] = self.skipped
        return stats
