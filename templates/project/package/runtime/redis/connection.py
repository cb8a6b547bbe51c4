"""Connections carried by Redis Streams: at-least-once delivery between processes.

Names (``<prefix>`` is ``<SERVICE>_REDIS_PREFIX``, empty by default):

- every output port with a Redis connection writes one stream,
  ``<prefix><service>.<component>.<port>`` (one entry per message, whatever the
  fan-out);
- every input port connected to it reads it as a consumer group named
  ``<component>.<port>``; each running replica of that component is a consumer of the
  group (``<SERVICE>_REDIS_CONSUMER``, by default ``<hostname>-<pid>``);
- items that failed ``max_retries`` deliveries go to ``<stream>.dlq``.

Delivery: the receiving replica reads entries (``XREADGROUP``) into a local buffer of
``buffer_size`` entries, and acknowledges one (``XACK``) only after the component is
done with it: its result written to the next connection, or consumed by a sink.
Entries a replica holds are renewed every ``claim_idle_ms / 4`` (and at least once a
second); entries nobody renewed for ``claim_idle_ms`` (their replica died, or the
delivery failed) are claimed by a live replica (``XAUTOCLAIM``) and delivered again.
A failure on the ``max_retries``-th delivery, or a claim that would be delivery
``max_retries + 1``, moves the entry to the dead-letter stream with an error record,
and acknowledges it, in one transaction.
Every Redis call goes through the service's ``RedisLink`` (``link``), which retries
while Redis is unreachable.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from time import monotonic
from typing import Any

import anyio
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydantic import ValidationError
from redis.exceptions import ResponseError

from ..envelope import Entry, Envelope
from ..pii import Masker
from ..ports import Connection, InputPort, OutputPort, Overflow, Placement, Writer
from .link import BACKOFF_MAX_S, UNREACHABLE, RedisLink, StreamId, stream_id
from .publisher import RedisPublisher
from .wire import DLQ_SUFFIX, FIELD, TARGET, WireError, decode, read

__all__ = ["RedisConnection"]

READ_BATCH = 256
ACK_DELAY_S = 0.005
FLUSH_TIMEOUT_S = 5.0
#: trim the stream every this many maintenance rounds
TRIM_EVERY = 10


@dataclass(frozen=True)
class _Held:
    """An entry this replica took and has not acknowledged yet."""

    id: bytes
    attempts: int
    data: bytes


@dataclass(frozen=True)
class _Dead:
    """An entry on its way to the dead-letter stream."""

    id: bytes
    attempts: int
    data: bytes
    error_type: str
    error: str
    #: why it was not delivered again (None: it failed ``max_retries`` deliveries)
    reason: str | None = None


class RedisConnection(Connection):
    """A connection carried by the Redis stream of its output port.

    The service says which ends run in this process (``place``): the sending end
    writes the stream, the receiving end reads it as the input port's consumer group
    and feeds a local buffer that the component drains like any connection.
    """

    transport = "redis"
    per_message = True
    between_processes = True
    # its replicas share one consumer group, so the items of one key may be taken
    # by two of them at once (keyed streams over Redis: issue #15)
    keeps_key_order = False

    def __init__(
        self,
        source: OutputPort,
        target: InputPort,
        *,
        buffer_size: int,
        overflow: Overflow,
        link: RedisLink,
    ) -> None:
        super().__init__(source, target, buffer_size=buffer_size, overflow=overflow)
        self.link = link
        self.stream = link.stream(source.component, source.name)
        self.group = target.address
        self.dead_letters = self.stream + DLQ_SUFFIX
        #: the sending / receiving end runs in this process
        self.sending = False
        self.receiving_here = False
        #: the port's publisher, when it sends from here (shared by the port's Redis
        #: connections; the first one that sends made it and runs it)
        self.publisher: RedisPublisher | None = None
        # what the metrics read
        self.lag = 0
        self.pending = 0
        self.redeliveries = 0
        self.dead_lettered = 0
        # the receiver's side
        self._stopping = anyio.Event()
        self._masker = Masker()
        self._outputs: list[OutputPort] = []
        self._writers: list[RedisPublisher] = []
        self._feed: MemoryObjectSendStream[Entry] | None = None
        self._held: dict[int, _Held] = {}
        # every entry taken here and not yet acknowledged (held, or waiting for its
        # XACK): renewed, and never claimed back by this replica
        self._unacked: set[bytes] = set()
        self._acks: list[bytes] = []
        self._waiting: deque[tuple[bytes, list[tuple[RedisPublisher, int]]]] = deque()
        self._dead: list[_Dead] = []
        self._work = anyio.Event()
        self._flushing = anyio.Lock()
        self._last_read: StreamId = (0, 0)
        self._read_scope: anyio.CancelScope | None = None
        self._cursor: bytes | str = "0-0"
        self._next_claim = 0.0
        self._interval = min(1.0, link.settings.redis_claim_idle_ms / 4000)

    def __repr__(self) -> str:
        return (
            f"RedisConnection({self.source.address} -> {self.target.address}, "
            f"stream={self.stream!r}, group={self.group!r})"
        )

    def place(self, placement: Placement) -> Writer | None:
        """Open the ends that run in this process; the writer to run, if it writes.

        ``placement.confirm``: the sender waits until Redis has each message.
        ``placement.outputs``: the receiving component's output ports; a message
        taken here is acknowledged only once what the component sent on them for it
        is in Redis.
        """
        self.sending = placement.sending
        self.receiving_here = placement.receiving
        self._stopping = placement.stopping
        self._masker = placement.masker
        self._confirm = placement.confirm
        self._outputs = list(placement.outputs)
        if self.sending or self.receiving_here:
            self.open()
        return self.write if self.writes else None

    def open(self) -> None:
        """Prepare the ends that run here; nothing talks to Redis yet."""
        if self.sending:
            # One entry per message: the port's first Redis connection that sends
            # from here makes the publisher and runs it; the port's other Redis
            # connections are consumer groups of the same stream.
            publisher = next(
                (
                    c.publisher
                    for c in self.source.connections
                    if isinstance(c, RedisConnection) and c.publisher is not None
                ),
                None,
            )
            if publisher is None:
                publisher = RedisPublisher(
                    self.link,
                    self.stream,
                    self.source,
                    buffer_size=self.buffer_size,
                    confirm=self._confirm,
                    owner=self,
                )
            self.publisher = publisher
            publisher.listen(self.wake)
            if self.max_lag is not None:
                publisher.bound(self.group, self.max_lag)
            self.offer = publisher.offer if publisher.owner is self else _written
        if self.receiving_here:
            self._feed, self.receiver = anyio.create_memory_object_stream[Entry](
                self.buffer_size
            )
            self.settled = self._settle
        self.source.prepare()

    # -- the sending end ------------------------------------------------------

    @property
    def writes(self) -> bool:
        """Whether this connection runs its port's publisher (the stream's writer)."""
        return self.publisher is not None and self.publisher.owner is self

    async def send(self, entry: Entry) -> None:
        """Queue the message, waiting for room; with ``confirm``, until it is written.

        Only the port's first connection sends: the others are groups of its stream.
        """
        if self.writes:
            assert self.publisher is not None
            await self.publisher.send(entry)

    async def write(self) -> None:
        """Write what the port sends to its stream (run by the service)."""
        assert self.publisher is not None
        await self.publisher.write()

    def writer_progressed(self) -> None:
        """A publisher this reader waits for wrote something: look at the acks."""
        self._work.set()

    def close_sender(self) -> None:
        """The sending component finished: the receiver here ends once caught up."""
        if self.writes:
            assert self.publisher is not None
            self.publisher.close_sender()
        self.wake()

    def close(self) -> None:
        """Close the local buffer (idempotent)."""
        if self.writes:
            assert self.publisher is not None
            self.publisher.close()
        if self._feed is not None:
            self._feed.close()
        if self.receiver is not None:
            self.receiver.close()

    # -- the receiving end ----------------------------------------------------

    @asynccontextmanager
    async def receiving(self) -> AsyncIterator[MemoryObjectReceiveStream[Entry]]:
        """Read the stream into the local buffer while the component drains it."""
        assert self.receiver is not None, "connection is not open here"
        self._writers = self.writers_of_outputs()
        for writer in self._writers:
            writer.listen(self.writer_progressed)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._read)
            tasks.start_soon(self._acknowledge)
            tasks.start_soon(self._maintain)
            tasks.start_soon(self._watch_stop)
            try:
                with self.receiver:
                    yield self.receiver
            finally:
                with anyio.CancelScope(shield=True):
                    with anyio.move_on_after(FLUSH_TIMEOUT_S):
                        while self._waiting:  # the writers are still writing
                            self._release()
                            await anyio.sleep(0.005)
                        await self._flush()
                        await self._leave()
                    tasks.cancel_scope.cancel()

    def writers_of_outputs(self) -> list[RedisPublisher]:
        """The publishers run here for the receiving component's outputs: a message
        taken here is acknowledged only once what it sent on them is written."""
        return [
            writer
            for port in self._outputs
            for c in port.connections
            if isinstance(c, RedisConnection)
            for writer in c.publishers_here()
        ]

    def publishers_here(self) -> list[RedisPublisher]:
        """The publishers this connection runs (its port's one, if it writes)."""
        return [self.publisher] if self.writes and self.publisher is not None else []

    def stream_stats(self) -> dict[str, Any] | None:
        """Lag, pending, redeliveries and dead letters of this group, as last seen."""
        if not self.receiving_here:
            return None
        return {
            "stream": self.stream,
            "lag": self.lag,
            "pending": self.pending,
            "redeliveries": self.redeliveries,
            "dead_lettered": self.dead_lettered,
        }

    def _finished(self) -> bool:
        """Whether the reader should stop taking entries."""
        writer = self.publisher
        if writer is not None:
            # The sender runs here: read until everything it wrote was read.
            written = writer.last_written
            return (
                writer.sender_closed
                and writer.flushed == writer.queued
                and (written is None or self._last_read >= written)
            )
        return self._stopping.is_set()

    def wake(self) -> None:
        """The stream may be finished now (its writer or sender closed): a reader
        waiting for new entries looks again."""
        if self._read_scope is not None and self._finished():
            self._read_scope.cancel()

    async def _watch_stop(self) -> None:
        await self._stopping.wait()
        self.wake()

    async def _read(self) -> None:
        feed = self._feed
        assert feed is not None
        async with feed:  # closing it ends the component's loop once drained
            # Interruptible like a read: a replica asked to stop while Redis is
            # unreachable holds nothing yet, and must not wait out the drain timeout.
            await self._until_finished(self._add_group)
            try:
                await self._read_until_finished(feed)
            except anyio.BrokenResourceError:
                # The component stopped taking (its task was cancelled): what was
                # read stays pending in Redis, for this replica or another.
                return

    async def _read_until_finished(self, feed: MemoryObjectSendStream[Entry]) -> None:
        while not self._finished():
            if monotonic() >= self._next_claim:
                self._next_claim = monotonic() + self._interval
                await self._claim(feed)
            await self._room_for_a_batch()
            entries = await self._read_new()
            if entries:  # in stream order: the last is the highest
                self._last_read = max(self._last_read, stream_id(entries[-1][0]))
            for entry_id, fields in entries:
                await self._deliver(feed, entry_id, fields, attempts=1)

    async def _room_for_a_batch(self) -> None:
        """Wait, while the buffer still holds a batch's worth of work, until it has
        room for a batch: reading one entry for each one the component took would
        cost a round trip per entry (TCP's silly window syndrome)."""
        batch = min(READ_BATCH, max(1, self.buffer_size // 4))
        while (
            self.depth() > self.buffer_size - batch
            and self.depth() >= batch
            and not self._finished()
        ):
            await anyio.sleep(ACK_DELAY_S)

    async def _read_new(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        client = self.link.client
        count = max(1, min(self.buffer_size - self.depth(), READ_BATCH))
        block_ms = max(10, int(self._interval * 1000))
        answer = await self._until_finished(
            lambda: client.xreadgroup(
                self.group,
                self.link.consumer,
                {self.stream: ">"},
                count=count,
                block=block_ms,
            )
        )
        return [entry for _, entries in answer or () for entry in entries]

    async def _until_finished(self, command: Callable[[], Awaitable[Any]]) -> Any:
        """``link.call(command)``; ``None`` when the reader finishes meanwhile.

        Only waits on Redis are interrupted: an entry read is always handed on.
        """
        with anyio.CancelScope() as scope:
            self._read_scope = scope
            try:
                if self._finished():
                    return None
                return await self.link.call(command)
            except ResponseError as exc:
                await self._refused(exc)
                return None
            finally:
                self._read_scope = None
        return None

    async def _refused(self, exc: ResponseError) -> None:
        if "NOGROUP" in str(exc):  # Redis lost the stream (restarted empty)
            self.link.log.warning(
                "group %s of %s is gone; creating it again", self.group, self.stream
            )
            await self._create_group()
            return
        self.link.log.error(
            "redis refused a command on %s: %s", self.stream, exc, exc_info=exc
        )
        await anyio.sleep(BACKOFF_MAX_S)

    async def _create_group(self) -> None:
        await self.link.call(self._add_group)

    async def _add_group(self) -> None:
        """Create the group (one attempt); one that exists already is fine."""
        try:
            # From the stream's start: entries written before any reader existed
            # are delivered too.
            await self.link.client.xgroup_create(
                self.stream, self.group, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _deliver(
        self,
        feed: MemoryObjectSendStream[Entry],
        entry_id: bytes,
        fields: dict[bytes, bytes],
        *,
        attempts: int,
    ) -> None:
        entry = self._hold(entry_id, fields, attempts)
        if entry is None:
            return
        try:  # without a checkpoint per entry: the read before it was one
            feed.send_nowait(entry)
        except anyio.WouldBlock:
            await feed.send(entry)

    def _hold(
        self, entry_id: bytes, fields: dict[bytes, bytes], attempts: int
    ) -> Entry | None:
        """The entry read as ``entry_id``, held here until it is settled; None:
        there is nothing to hand on (it was for another port, or is unreadable)."""
        self._unacked.add(entry_id)
        target = fields.get(TARGET)
        if target is not None and target.decode() != self.group:
            self._acks.append(entry_id)  # replayed for another input port
            self._work.set()
            return None
        data = fields.get(FIELD, b"")
        try:
            entry = decode(data, self.source.schema)
        except (WireError, ValidationError) as exc:
            # The same bytes would fail every time: no retries.
            self._bury(entry_id, attempts, data, exc)
            return None
        self._held[entry[1].seq] = _Held(entry_id, attempts, data)
        return entry

    def _settle(self, envelope: Envelope, error: Exception | None) -> None:
        held = self._held.pop(envelope.seq, None)
        if held is None:
            return
        if error is None:
            # What the component sent for this message must be in Redis first.
            barrier = [(w, w.queued) for w in self._writers if w.flushed < w.queued]
            if barrier:
                self._waiting.append((held.id, barrier))
            else:
                self._acks.append(held.id)
                self._work.set()
        elif held.attempts >= self.link.settings.redis_max_retries:
            self._bury(held.id, held.attempts, held.data, error)
        else:  # left pending: claimed again (by any replica) once idle long enough
            self._unacked.discard(held.id)

    def _bury(
        self,
        entry_id: bytes,
        attempts: int,
        data: bytes,
        error: BaseException,
        reason: str | None = None,
    ) -> None:
        message = self._masker.mask_text(str(error))[:2000]
        self._dead.append(
            _Dead(entry_id, attempts, data, type(error).__name__, message, reason)
        )
        self._work.set()

    async def _acknowledge(self) -> None:
        while True:
            await self._work.wait()
            self._release()
            if len(self._acks) < READ_BATCH:
                # Waiting a moment gathers more acknowledgements into one XACK;
                # acknowledging late is always safe (at worst, delivered again).
                await anyio.sleep(ACK_DELAY_S)
            self._work = anyio.Event()
            await self._flush()

    def _release(self) -> None:
        """Acknowledge the messages whose results the writers have written."""
        waiting = self._waiting
        while waiting and all(w.flushed >= n for w, n in waiting[0][1]):
            self._acks.append(waiting.popleft()[0])

    async def _flush(self) -> None:
        client = self.link.client
        async with self._flushing:
            self._release()
            while self._acks or self._dead:
                dead, self._dead = self._dead, list[_Dead]()
                for letter in dead:
                    record = self._record(letter)

                    async def bury(
                        letter: _Dead = letter, record: bytes = record
                    ) -> Any:
                        pipe = client.pipeline(transaction=True)
                        pipe.xadd(self.dead_letters, {FIELD: record})
                        pipe.xack(self.stream, self.group, letter.id)
                        return await pipe.execute()

                    await self.link.call(bury)
                    self._unacked.discard(letter.id)
                    self.dead_lettered += 1
                    self.link.log.error(
                        "%s: entry %s of %s moved to %s after %d deliveries: %s: %s",
                        self.group,
                        letter.id.decode(),
                        self.stream,
                        self.dead_letters,
                        letter.attempts,
                        letter.error_type,
                        letter.error,
                    )
                acks, self._acks = self._acks, list[bytes]()
                if acks:
                    await self.link.call(
                        partial(client.xack, self.stream, self.group, *acks)
                    )
                    self._unacked.difference_update(acks)

    def _record(self, letter: _Dead) -> bytes:
        """The dead-letter entry: the original envelope, the error, attempts, times."""
        try:
            read(letter.data)
            envelope: Any = orjson.Fragment(letter.data)
        except WireError:
            envelope = letter.data.decode("utf-8", "replace")
        return orjson.dumps(
            {
                "stream": self.stream,
                "group": self.group,
                "entry_id": letter.id.decode(),
                "envelope": envelope,
                "error": {"type": letter.error_type, "message": letter.error},
                "attempts": letter.attempts,
                "enqueued_at": stream_id(letter.id)[0] / 1000,
                "dead_lettered_at": time.time(),
                "consumer": self.link.consumer,
                # why it was not delivered again, when not max_retries failures
                **({} if letter.reason is None else {"reason": letter.reason}),
            }
        )

    async def _claim(self, feed: MemoryObjectSendStream[Entry]) -> None:
        """Take over entries idle for ``claim_idle_ms``: a dead replica's, or failed."""
        client = self.link.client
        settings = self.link.settings
        room = max(1, min(self.buffer_size - self.depth(), READ_BATCH))
        answer = await self._until_finished(
            lambda: client.xautoclaim(
                self.stream,
                self.group,
                self.link.consumer,
                min_idle_time=settings.redis_claim_idle_ms,
                start_id=self._cursor,
                count=room,
            )
        )
        if answer is None:
            return
        self._cursor = answer[0]
        # An entry this replica took and has not acknowledged comes back only because
        # renewing it was late (a stalled event loop): it is still on its way, skip it.
        mine = self._unacked
        claimed = [(i, f) for i, f in answer[1] if f is not None and i not in mine]
        if len(answer) > 2 and answer[2]:
            self.link.log.warning(
                "%s: %d pending entries of %s were deleted before anyone "
                "acknowledged them",
                self.group,
                len(answer[2]),
                self.stream,
            )
        await self._redeliver(feed, claimed)

    async def _redeliver(
        self,
        feed: MemoryObjectSendStream[Entry],
        claimed: list[tuple[bytes, dict[bytes, bytes]]],
    ) -> None:
        """Deliver claimed entries again, in order; those past ``max_retries`` go to
        the dead-letter stream instead."""
        if not claimed:
            return
        settings = self.link.settings
        counts = await self._delivery_counts([entry_id for entry_id, _ in claimed])
        for entry_id, fields in claimed:
            attempts = counts.get(entry_id, 1)
            if attempts > settings.redis_max_retries:
                self._unacked.add(entry_id)
                self._bury(
                    entry_id,
                    attempts - 1,
                    fields.get(FIELD, b""),
                    _Undelivered(
                        f"delivered {attempts - 1} times without being acknowledged "
                        "(the replicas that took it stopped, or took longer than "
                        f"claim_idle_ms={settings.redis_claim_idle_ms})"
                    ),
                )
                continue
            self.redeliveries += 1
            await self._deliver(feed, entry_id, fields, attempts=attempts)

    async def _delivery_counts(self, ids: list[bytes]) -> dict[bytes, int]:
        client = self.link.client
        rows = await self.link.call(
            lambda: client.xpending_range(
                self.stream,
                self.group,
                min=ids[0],
                max=ids[-1],
                count=len(ids) + len(self._unacked) + 16,
                consumername=self.link.consumer,
            )
        )
        return {
            _text(row["message_id"]).encode(): int(row["times_delivered"])
            for row in rows
        }

    async def _maintain(self) -> None:
        """Renew what this replica holds, read lag and pending, trim the stream."""
        rounds = 0
        while True:
            await anyio.sleep(self._interval)
            try:
                await self._renew()
                await self._observe()
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

    async def _renew(self) -> None:
        ids: list[Any] = list(self._unacked)
        if not ids:
            return
        client = self.link.client
        # JUSTID: resets the idle time without counting a delivery.
        await self.link.call(
            lambda: client.xclaim(
                self.stream, self.group, self.link.consumer, 0, ids, justid=True
            )
        )

    async def _observe(self) -> None:
        groups = await self._groups()
        mine = groups.get(self.group)
        if mine is None:
            return
        self.pending = int(mine.get("pending") or 0)
        lag = mine.get("lag")
        if lag is None:  # Redis could not tell (entries deleted inside the range)
            length = await self.link.call(lambda: self.link.client.xlen(self.stream))
            lag = max(0, int(length) - self.pending)
        self.lag = int(lag)

    async def _groups(self) -> dict[str, dict[str, Any]]:
        try:
            rows = await self.link.call(
                lambda: self.link.client.xinfo_groups(self.stream)
            )
        except ResponseError as exc:
            if "no such key" in str(exc):
                return {}
            raise
        return {_text(row["name"]): row for row in rows}

    async def _trim(self) -> None:
        """Drop the entries every group has acknowledged (``XTRIM MINID``)."""
        groups = await self._groups()
        expected = {
            c.group for c in self.source.connections if isinstance(c, RedisConnection)
        }
        if not groups or not expected <= set(groups):
            return  # a group that does not exist yet still needs every entry
        client = self.link.client
        floor: StreamId | None = None
        for name, group in groups.items():
            lowest = group.get("last-delivered-id")
            if group.get("pending"):
                summary = await self.link.call(
                    partial(client.xpending, self.stream, name)
                )
                lowest = summary.get("min") or lowest  # None: acknowledged meanwhile
            if lowest is None:
                return
            floor = min(floor or stream_id(lowest), stream_id(lowest))
        if floor is not None and floor > (0, 0):
            await self.link.call(
                lambda: client.xtrim(
                    self.stream, minid=f"{floor[0]}-{floor[1]}", approximate=True
                )
            )

    async def _leave(self) -> None:
        """Remove this consumer from the group when it holds nothing."""
        client = self.link.client
        if self.link.problem is not None:
            return
        try:
            summary = await client.xpending(self.stream, self.group)
            mine = [
                c
                for c in summary.get("consumers") or ()
                if _text(c["name"]) == self.link.consumer
            ]
            if not mine or int(mine[0]["pending"]) == 0:
                await client.xgroup_delconsumer(
                    self.stream, self.group, self.link.consumer
                )
        except (*UNREACHABLE, ResponseError):
            return  # it is only tidying up


class _Undelivered(Exception):
    """The error recorded for entries whose consumers never finished with them."""


def _written(entry: Entry) -> bool:
    return True  # the port's writer has put it in the stream


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value
