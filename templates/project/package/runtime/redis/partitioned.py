"""A keyed connection over Redis: partitions that the receiving replicas own.

A connection with a ``key`` is ``partitions`` streams, one per partition:
``<prefix><service>.<component>.<port>.<target component>.<target port>.p<N>`` (N
from 0; the streams are the connection's own: two keyed connections from one port
may differ in key and count, and each reads every item once), in braces on a Redis
Cluster so that the partition's stream, its dead-letter stream (``.dlq``), its
lease (``.lease.<group>``), its fence counter (``.fence.<group>``) and its suspect
record (``.suspect.<group>``) share one hash slot. The sender puts each message on the stream of ``partition_of(key,
partitions)`` (``partitions``: CRC-32 of the key's canonical bytes).

The receiving replicas each beat every ``lease_ttl / 4`` in the group's member set
(``replicas.heartbeat``) and own the partitions that rendezvous hashing gives them
over the live members. A replica reads a partition only while it holds its lease
(``leases``), renewed at each beat:

- taking a partition, it first claims every entry still pending in the group (the
  old owner's, in stream order) and delivers them, then reads new entries; the
  oldest, the entry in hand when the old owner stopped, alone and settled first,
  dead-lettered once in hand at more than ``redis_max_takeovers`` takeovers in a
  row (``_suspect``);
- a partition it no longer owns (a member joined), it stops reading, lets what it
  took finish and be acknowledged, then releases the lease;
- a lease it could not renew in time (Redis unreachable, the process paused), it
  stops reading by its own clock before the lease can pass on; what it still holds
  of that partition is neither acknowledged nor written (fenced), and the next
  owner delivers it again.

Within a partition, entries reach the component in stream order, and the
component's loop (or its window's per-key exclusion) never has one key in flight
twice: each key's items are handled in the order they were sent.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from time import monotonic
from typing import Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydantic import BaseModel
from redis.exceptions import ResponseError

from ..envelope import Entry, Envelope, Origin
from ..joinstate import Side
from ..ports import InputPort, OutputPort, Overflow
from .connection import (
    ACK_DELAY_S,
    FLUSH_TIMEOUT_S,
    READ_BATCH,
    RedisConnection,
    _Dead,
    _Undelivered,
)
from .joinstore import Joined, JoinStore
from .leases import SAFE, TO, Lease, Leases
from .link import UNREACHABLE, RedisLink, stream_id
from .partitions import assignment, partition_of, skew
from .publisher import ROOM_POLL_S, WRITE_BATCH, RedisPublisher
from .replicas import heartbeat, live_members
from .statestore import LOST, ROOM, Output, RedisKeyedState, StateWrite
from .windowstore import Windowed, WindowStore
from .wire import DLQ_SUFFIX, FIELD, encode

__all__ = ["PartitionReader", "PartitionedConnection"]

#: how often, per lease ttl, a replica beats and renews its leases
BEATS_PER_TTL = 4
#: how long a relay with an empty outbox waits before it looks again (s)
RELAY_IDLE_S = 0.5
#: the span the skew is measured over (s): what each partition's stream took in it
SKEW_SPAN_S = 60.0
#: the wait before an item that failed is tried again in place (s), doubled at each
#: failure up to ``RETRY_MAX_S``: its key's later items wait for it meanwhile
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 1.0


class PartitionedConnection(RedisConnection):
    """A keyed connection carried by one Redis stream per partition."""

    keeps_key_order = True

    def __init__(
        self,
        source: OutputPort,
        target: InputPort,
        *,
        buffer_size: int,
        overflow: Overflow,
        link: RedisLink,
        partitions: int,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        super().__init__(
            source, target, buffer_size=buffer_size, overflow=overflow, link=link
        )
        self.partitions = partitions
        self.leases = Leases(link, clock)
        self.streams = [
            link.stream(source.component, f"{source.name}.{target.address}.p{n}")
            for n in range(partitions)
        ]
        if link.cluster and getattr(target, "co_partitioned", False):
            # a join's input: partition n of both its inputs in one slot (joinstore)
            self.streams = [
                link.tagged(
                    f"{target.component}.p{n}",
                    f"{source.component}.{source.name}.{target.address}.p{n}",
                )
                for n in range(partitions)
            ]
        self.readers = [PartitionReader(self, n) for n in range(partitions)]
        #: the publisher of each partition's stream, when the sender runs here
        self.publishers: list[RedisPublisher] = []
        #: the live members last seen, and each partition's owner among them
        self.members: list[str] = []
        self.assigned: dict[int, str | None] = {}
        #: how many times the assignment changed since the start
        self.assignment_changes = 0
        #: the hottest partition's intake over the mean, over ``SKEW_SPAN_S``
        self.skew = 0.0
        # (time, entries each partition's stream took since it began), oldest first
        self._intake: deque[tuple[float, list[int]]] = deque()
        #: messages taken and not settled: the lease they were read under, by
        #: their sequence number here, and by their id (what is made of them
        #: names it as its cause: ``fence_of``)
        self._taken: dict[int, Lease] = {}
        self._fences: dict[str, Lease] = {}
        #: deliveries in place of the messages that failed and are tried again
        self._tries: dict[int, int] = {}
        #: one takeover's entry in hand at a time in this process (``_suspect``)
        self._suspecting = anyio.Lock()
        #: the state of the window this connection feeds, kept in Redis (None: the
        #: target is no window)
        self.kept: WindowStore | None = None
        #: the key states of the stateful component this connection feeds, kept in
        #: Redis (None: the target keeps none)
        self.keyed_state: RedisKeyedState | None = None
        #: what the stateful component made of each input taken here (by the
        #: input's message id), until the input is settled: written by its
        #: ``ACK_STATE`` (``take_output``)
        self._made: dict[str, list[Output]] = {}
        #: the join this connection feeds one side of, its state kept in Redis
        #: (``joinstore``; None: the target is no join)
        self.joined: tuple[JoinStore, Side] | None = None
        self._ttl_ms = link.settings.redis_lease_ttl_ms
        # how long a beat, a renewal or a grant may take before it is given up
        # for this round: half of what the lease is trusted for (a busy event loop
        # delays the answer; the lease's own clock ends it meanwhile if need be)
        self._patience = self._ttl_ms / 1000 * SAFE / 2

    def __repr__(self) -> str:
        return (
            f"PartitionedConnection({self.source.address} -> {self.target.address}, "
            f"partitions={self.partitions}, group={self.group!r})"
        )

    def lease_key(self, partition: int) -> str:
        """The lease of ``partition`` for this group."""
        return f"{self.streams[partition]}.lease.{self.group}"

    def outbox_key(self, partition: int) -> str:
        """On a Cluster: what is written under ``partition``'s lease, for its relay."""
        return f"{self.streams[partition]}.outbox.{self.group}"

    def fence_key(self, partition: int) -> str:
        """The counter whose every grant of ``partition``'s lease takes a token."""
        return f"{self.streams[partition]}.fence.{self.group}"

    def suspect_key(self, partition: int) -> str:
        """The entry in hand at ``partition``'s last takeovers, and how many in a
        row (``PartitionReader._suspect``)."""
        return f"{self.streams[partition]}.suspect.{self.group}"

    # -- the sending end ------------------------------------------------------

    def open(self) -> None:
        """Prepare the ends that run here; nothing talks to Redis yet."""
        if self.sending:
            self.publishers = [
                RedisPublisher(
                    self.link,
                    stream,
                    self.source,
                    buffer_size=self.buffer_size,
                    confirm=self._confirm,
                    owner=self,
                )
                for stream in self.streams
            ]
            for publisher, reader in zip(self.publishers, self.readers, strict=True):
                publisher.listen(reader.wake)
                if self.max_lag is not None:
                    publisher.bound(self.group, self.max_lag)
            self.offer = self._offer
        if self.receiving_here:
            self._feed, self.receiver = anyio.create_memory_object_stream[Entry](
                self.buffer_size
            )
            self.settled = self._settle
        self.source.prepare()

    @property
    def writes(self) -> bool:
        """Whether the sender runs here (then this connection writes every stream)."""
        return bool(self.publishers)

    def publishers_here(self) -> list[RedisPublisher]:
        """Every partition's publisher, when the sender runs here."""
        return list(self.publishers)

    def _publisher(self, entry: Entry) -> RedisPublisher:
        key = self.key
        assert key is not None, "a partitioned connection is keyed"
        return self.publishers[partition_of(key(entry[1].item), self.partitions)]

    def _offer(self, entry: Entry) -> bool:
        return self._publisher(entry).offer(entry)

    async def send(self, entry: Entry) -> None:
        """Queue the message on its partition's stream, waiting for room."""
        if self.publishers:
            await self._publisher(entry).send(entry)

    async def write(self) -> None:
        """Write every partition's stream (run by the service)."""
        async with anyio.create_task_group() as writers:
            for publisher in self.publishers:
                writers.start_soon(publisher.write)

    def close_sender(self) -> None:
        """The sending component finished: the readers here end once caught up."""
        for publisher in self.publishers:
            publisher.close_sender()
        self.wake()

    def close(self) -> None:
        """Close the local buffer and the writers (idempotent)."""
        for publisher in self.publishers:
            publisher.close()
        if self._feed is not None:
            self._feed.close()
        if self.receiver is not None:
            self.receiver.close()

    def wake(self) -> None:
        """A reader waiting for new entries looks again whether it is finished."""
        for reader in self.readers:
            reader.wake()

    # -- the receiving end ----------------------------------------------------

    @asynccontextmanager
    async def receiving(self) -> AsyncIterator[MemoryObjectReceiveStream[Entry]]:
        """Own partitions and read them into the local buffer while the component
        drains it."""
        assert self.receiver is not None, "connection is not open here"
        self._writers = self.writers_of_outputs()
        for writer in self._writers:
            writer.listen(self.writer_progressed)
            writer.fence_by(self.fence_of, self.leases)
            if self.keyed_state is not None:
                writer.take_by(self.take_output)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._own, tasks)
            tasks.start_soon(self._watch_stop)
            try:
                with self.receiver:
                    yield self.receiver
            finally:
                with anyio.CancelScope(shield=True):
                    with anyio.move_on_after(FLUSH_TIMEOUT_S):
                        for reader in self.readers:
                            await reader.settle_all()
                        await self._beat(leave=True)
                    tasks.cancel_scope.cancel()

    def writer_progressed(self) -> None:
        """A publisher the readers wait for wrote something: look at the acks (and,
        on a Cluster, at the outboxes)."""
        for reader in self.readers:
            reader.writer_progressed()
            reader.parked.set()

    def fence_of(self, envelope: Envelope) -> Lease | None:
        """The lease a message made from ``envelope`` is written under (None: its
        input is not one of this connection's)."""
        parent = envelope.parent
        if parent.__class__ is not Origin:  # not made of a message from Redis
            return None
        assert isinstance(parent, Origin)
        cause = parent.causation_id
        return None if cause is None else self._fences.get(cause)

    def take_output(self, publisher: RedisPublisher, entry: Entry) -> bool:
        """A stateful component's output made of an input taken here: kept to be
        written by the input's ``ACK_STATE``, with its ack and its key's state
        (True: taken; not for the publisher to write)."""
        enqueued, envelope = entry
        lease = self.fence_of(envelope)
        if lease is None:
            return False
        reader = self.readers[lease.partition]
        if reader.lease is not lease or lease.lost:
            # its partition has passed on: its new owner makes it again
            publisher.refused += 1
            return True
        parent = envelope.parent
        assert isinstance(parent, Origin) and parent.causation_id is not None
        made = self._made.setdefault(parent.causation_id, [])
        made.append((publisher, encode(envelope, enqueued)))
        return True

    def keep_window(self, window: Windowed) -> WindowStore:
        """Keep ``window``'s state per partition in Redis (``windowstore``): its
        items are acknowledged by the store's commits, not settled."""
        self.kept = WindowStore(window, self)
        return self.kept

    def keep_join(self, join: Joined, side: Side, store: JoinStore | None) -> JoinStore:
        """Keep ``join``'s state per partition in Redis (``joinstore``), this
        connection its ``side`` input: one store for both (``store``, made by the
        first side's connection)."""
        store = JoinStore(join) if store is None else store
        store.attach(side, self)
        self.joined = (store, side)
        return store

    def keep_state(
        self,
        initial: Callable[[], Any],
        max_keys: int,
        state_type: type[BaseModel] | None,
    ) -> RedisKeyedState:
        """Keep a stateful component's key states per partition in Redis
        (``statestore``), each written by the script acknowledging its item: the
        store, made here so that the component never imports a transport."""
        store = RedisKeyedState(initial, max_keys, state_type, self.partitions)
        self.keyed_state = store
        return store

    def state_key(self, partition: int) -> str:
        """The hash holding ``partition``'s key states (a window's, or a stateful
        component's)."""
        return f"{self.streams[partition]}.state.{self.group}"

    def held(self, envelope: Envelope) -> tuple[Lease, bytes] | None:
        """The lease an entry was taken under and its id (None: not held here, or
        not under the partition's current lease)."""
        lease = self._taken.get(envelope.seq)
        if lease is None:
            return None
        reader = self.readers[lease.partition]
        held = reader._held.get(envelope.seq) if reader.lease is lease else None
        return None if held is None else (lease, held.id)

    def committed(self, lease: Lease, entries: list[Entry]) -> None:
        """A window store's commit under ``lease`` acknowledged ``entries`` (no
        longer held) and wrote or parked its results."""
        taken, fences = self._taken, self._fences
        for _, envelope in entries:
            taken.pop(envelope.seq, None)
            if fences.get(envelope.id) is lease:
                del fences[envelope.id]
        reader = self.readers[lease.partition]
        if reader.lease is lease:
            reader.committed(entries)
            reader.parked.set()  # on a Cluster the results wait in the outbox

    def lose(self, lease: Lease, why: str) -> None:
        """Stop reading the partition of ``lease`` (if still read under it)."""
        reader = self.readers[lease.partition]
        if reader.lease is lease:
            reader.lose(why)

    def give_up(self, lease: Lease) -> None:
        """Hand the partition of ``lease`` over (if still read under it): what was
        taken is settled, then the lease released (``joinstore``: the join's other
        input let its partition go)."""
        reader = self.readers[lease.partition]
        if reader.lease is lease:
            reader.give_up()

    def forget(self, lease: Lease, entries: list[Entry]) -> None:
        """Entries taken under ``lease`` that will not be acknowledged here: no
        longer held, so that the reader settles without them; pending in Redis,
        the next owner delivers them again (``joinstore``)."""
        taken, fences = self._taken, self._fences
        reader = self.readers[lease.partition]
        for _, envelope in entries:
            taken.pop(envelope.seq, None)
            if fences.get(envelope.id) is lease:
                del fences[envelope.id]
            held = (
                reader._held.pop(envelope.seq, None) if reader.lease is lease else None
            )
            if held is not None:
                reader._unacked.discard(held.id)

    def retry_after(self, envelope: Envelope, failed: int) -> float | None:
        """How long to wait before the message that failed its ``failed``-th
        delivery here is tried again in place (None: it had ``max_retries``, and
        is dead-lettered when settled).

        Left pending, it would be claimed again after ``claim_idle_ms``, behind the
        later items of its key already delivered: its key's order would break at
        the first exception. Tried again before anything else of its loop, it
        keeps it."""
        if failed >= self.link.settings.redis_max_retries:
            return None
        self._tries[envelope.seq] = failed + 1
        return min(RETRY_MAX_S, RETRY_FIRST_S * 2.0 ** (failed - 1))

    def _settle(self, envelope: Envelope, error: Exception | None) -> None:
        tries = self._tries.pop(envelope.seq, 1) if self._tries else 1
        write, made = None, None
        if self.keyed_state is not None:
            write = self.keyed_state.written(envelope.item)
            made = self._made.pop(envelope.id, None)
        lease = self._taken.pop(envelope.seq, None)
        if lease is None:
            return
        if self._fences.get(envelope.id) is lease:
            del self._fences[envelope.id]
        reader = self.readers[lease.partition]
        if reader.lease is not lease:  # read under an earlier lease: not ours now
            return
        if error is None:
            held = reader._held.get(envelope.seq)
            if held is not None:
                if write is not None:
                    reader.state_writes[held.id] = write
                if made:
                    reader.state_outputs[held.id] = made
            reader._settle(envelope, None)
        else:  # never left pending: the later items of its key would overtake it
            reader.bury_failed(envelope, error, tries)

    def stream_stats(self) -> dict[str, Any] | None:
        """Lag, pending, redeliveries and dead letters over the partitions owned."""
        if not self.receiving_here:
            return None
        readers = self.readers
        return {
            "stream": f"{self.link.stream(self.source.component, self.source.name)}.p*",
            "lag": sum(r.lag for r in readers if r.lease is not None),
            "pending": sum(r.pending for r in readers if r.lease is not None),
            "redeliveries": sum(r.redeliveries for r in readers),
            "dead_lettered": sum(r.dead_lettered for r in readers),
        }

    def partition_stats(self) -> dict[str, Any] | None:
        """Per partition: owner, messages in and out here, lag, pending; and the
        skew, the members and the assignment changes (metrics, ``/ready``, the
        ``partitions`` command)."""
        if not self.receiving_here:
            return None
        return {
            "partitions": [
                {
                    "partition": r.partition,
                    "stream": r.stream,
                    "owner": self.assigned.get(r.partition) or "",
                    "owned": r.lease is not None,
                    "token": None if r.lease is None else r.lease.token,
                    "messages_in": r.taken,
                    "messages_out": r.acknowledged,
                    "lag": r.lag if r.lease is not None else None,
                    "pending": r.pending if r.lease is not None else None,
                }
                for r in self.readers
            ],
            "skew": self.skew,
            "members": list(self.members),
            "assignment_changes": self.assignment_changes,
        }

    async def survey(self) -> dict[str, Any]:
        """What Redis says now: the live members, each partition's assigned owner,
        its lease (owner, token, ms left) and its group's lag and pending (the
        ``partitions`` command)."""
        client = self.link.client
        members = await live_members(self.link, self.group)
        assigned = assignment(self.partitions, members)
        rows = []
        for n, stream in enumerate(self.streams):
            lease = await client.hgetall(self.lease_key(n))
            ttl = await client.pttl(self.lease_key(n))
            groups = await self._groups_of(stream)
            mine = groups.get(self.group, {})
            rows.append(
                {
                    "partition": n,
                    "stream": stream,
                    "assigned": assigned.get(n),
                    "owner": _text(lease.get(b"owner")),
                    "token": _text(lease.get(b"token")),
                    "ttl_ms": int(ttl) if ttl and ttl > 0 else None,
                    "lag": mine.get("lag"),
                    "pending": mine.get("pending"),
                }
            )
        return {"members": members, "partitions": rows}

    async def _groups_of(self, stream: str) -> dict[str, dict[str, Any]]:
        try:
            rows = await self.link.client.xinfo_groups(stream)
        except ResponseError:  # no such stream yet
            return {}
        return {_text(row["name"]) or "": row for row in rows}

    async def _measure(self) -> None:
        """Sample what each partition's stream took (``entries-added``): the skew."""
        client = self.link.client
        added: list[int] = []
        for stream in self.streams:
            try:
                info = await client.xinfo_stream(stream)
            except ResponseError:  # no such stream yet
                added.append(0)
                continue
            added.append(int(info.get("entries-added") or 0))
        now = self.leases.clock()
        intake = self._intake
        intake.append((now, added))
        while len(intake) > 2 and now - intake[1][0] >= SKEW_SPAN_S:
            intake.popleft()
        first = intake[0][1]
        self.skew = skew([b - a for a, b in zip(first, added, strict=True)])

    def owned(self) -> list[int]:
        """The partitions this replica holds a lease on now."""
        return [r.partition for r in self.readers if r.lease is not None]

    def _sender_done(self, partition: int) -> bool:
        """With the sender here: it closed and the partition was read through."""
        publisher = self.publishers[partition]
        written = publisher.last_written
        return (
            publisher.sender_closed
            and publisher.flushed == publisher.queued
            and (written is None or self.readers[partition]._last_read >= written)
        )

    def _finished(self) -> bool:
        if self.publishers:
            return all(self._sender_done(n) for n in range(self.partitions))
        return self._stopping.is_set()

    async def _own(self, tasks: anyio.abc.TaskGroup) -> None:
        """Beat, follow the assignment, renew leases; end once finished and no
        partition is held any more, then close the local buffer."""
        feed = self._feed
        assert feed is not None
        period = self._ttl_ms / 1000 / BEATS_PER_TTL
        async with feed:
            while True:
                finished = self._finished()
                await self._follow(tasks, feed, finished)
                if finished and not self.owned():
                    return
                with anyio.move_on_after(period):
                    await self._watch_leases(period / 4)

    async def _watch_leases(self, every: float) -> None:
        """Between beats: stop reading a partition whose lease ran out here."""
        while True:
            now = self.leases.clock()
            for reader in self.readers:
                if reader.lease is not None and not reader.lease.valid(now):
                    reader.lose("its lease was not renewed in time")
            await anyio.sleep(every)

    async def _follow(
        self,
        tasks: anyio.abc.TaskGroup,
        feed: MemoryObjectSendStream[Entry],
        finished: bool,
    ) -> None:
        # Renew first: nothing slower (the beat, the skew's sample) may delay it.
        for reader in self.readers:
            if reader.lease is not None:
                await self._renew_lease(reader, reader.lease)
        members = await self._beat()
        if members is None:  # Redis did not answer: leases run out by the clock
            return
        assigned = assignment(self.partitions, members)
        if assigned != self.assigned:
            if self.assigned:
                self.assignment_changes += 1
            self.assigned = assigned
            self.members = members
        me = self.link.consumer
        for reader in self.readers:
            mine = assigned.get(reader.partition) == me and not finished
            if reader.lease is not None:
                if not mine:
                    reader.give_up()
            elif mine and not reader.running:
                await self._take(tasks, feed, reader)
        try:
            with anyio.fail_after(self._patience):
                await self._measure()
        except (*UNREACHABLE, TimeoutError, ResponseError):
            pass  # only a metric: measured again at the next beat

    async def _beat(self, leave: bool = False) -> list[str] | None:
        ttl = 0 if leave else self._ttl_ms
        try:
            with anyio.fail_after(self._patience):
                return await heartbeat(self.link, self.group, ttl)
        except UNREACHABLE as exc:
            self.link._down(exc)
            return None
        except TimeoutError:  # slow (a busy event loop): the clock decides
            return None

    async def _renew_lease(self, reader: PartitionReader, lease: Lease) -> None:
        try:
            with anyio.fail_after(self._patience):
                renewed = await self.leases.renew(lease, self._ttl_ms)
        except (*UNREACHABLE, TimeoutError):
            return  # tried again at the next beat; the clock ends it meanwhile
        if not renewed:
            reader.lose(
                "its lease ran out here before it was renewed"
                if lease.lost
                else "its lease passed to another replica"
            )

    async def _take(
        self,
        tasks: anyio.abc.TaskGroup,
        feed: MemoryObjectSendStream[Entry],
        reader: PartitionReader,
    ) -> None:
        n = reader.partition
        try:
            with anyio.fail_after(self._patience):
                lease = await self.leases.acquire(
                    n,
                    self.lease_key(n),
                    self.fence_key(n),
                    self.link.consumer,
                    self._ttl_ms,
                    outbox=self.outbox_key(n),
                )
        except (*UNREACHABLE, TimeoutError):
            return
        if lease is None:  # its owner has not let it go yet
            return
        self.link.log.info(
            "%s: took partition %d of %s (token %s)",
            self.group,
            n,
            self.streams[n],
            lease.token,
        )
        reader.lease = lease
        reader.running = True
        tasks.start_soon(reader.run, feed.clone(), lease)


class PartitionReader(RedisConnection):
    """One partition of a keyed connection, read while this replica holds its lease.

    It reuses the stream reader of ``RedisConnection`` (delivery, claims of its own
    failed entries, dead letters, lag), on the partition's stream, into the keyed
    connection's local buffer; its acknowledgements go through ``ACK_FENCED``.
    """

    def __init__(self, parent: PartitionedConnection, partition: int) -> None:
        super().__init__(
            parent.source,
            parent.target,
            buffer_size=parent.buffer_size,
            overflow=parent.overflow,
            link=parent.link,
        )
        self.parent = parent
        self.partition = partition
        self.stream = parent.streams[partition]
        self.dead_letters = self.stream + DLQ_SUFFIX
        #: the lease it reads under (None: not held)
        self.lease: Lease | None = None
        #: its reading task runs (from the grant until it settled what it took)
        self.running = False
        #: acknowledgements and writes the lease refused
        self.refused = 0
        #: stateful scripts held back: a bounded output stream was full (max_lag)
        self.held_back = 0
        #: entries taken from the partition here, and acknowledged (since the start)
        self.taken = 0
        self.acknowledged = 0
        #: set when something may have been parked in the outbox (Cluster)
        self.parked = anyio.Event()
        self._leaving = anyio.Event()
        self._lost = False
        #: the key states each entry taken here changed, and the outputs the
        #: stateful component made of it, written with its ack (``ACK_STATE``)
        self.state_writes: dict[bytes, StateWrite] = {}
        self.state_outputs: dict[bytes, list[Output]] = {}

    def __repr__(self) -> str:
        return f"PartitionReader({self.stream!r}, group={self.group!r})"

    def depth(self) -> int:
        """The keyed connection's buffer (shared by its partitions)."""
        return self.parent.depth()

    def give_up(self) -> None:
        """Stop reading: the partition belongs to another member now. What was taken
        is settled first, then the lease released."""
        if not self._leaving.is_set():
            self.link.log.info(
                "%s: handing partition %d of %s over", self.group, self.partition,
                self.stream,
            )  # fmt: skip
            self._leaving.set()
            self.wake()
            if self.parent.joined is not None and self.lease is not None:
                store, side = self.parent.joined
                store.leaving(side, self.lease)

    def lose(self, why: str) -> None:
        """Stop at once, acknowledging and writing nothing more under the lease."""
        lease = self.lease
        if lease is None or self._lost:
            return
        self._lost = True
        lease.lost = True
        self.link.log.warning(
            "%s: partition %d of %s lost (%s); its new owner delivers what was "
            "in flight here again",
            self.group,
            self.partition,
            self.stream,
            why,
        )
        self._leaving.set()
        self.wake()

    def _finished(self) -> bool:
        lease = self.lease
        if (
            lease is None
            or self._leaving.is_set()
            or not lease.usable(self.parent.leases.clock())
        ):
            return True
        if self.parent.publishers:
            return self.parent._sender_done(self.partition)
        return self.parent._stopping.is_set()

    def wake(self) -> None:
        """Interrupt a wait for new entries when the reading should end."""
        if self._read_scope is not None and self._finished():
            self._read_scope.cancel()

    async def run(self, feed: MemoryObjectSendStream[Entry], lease: Lease) -> None:
        """Read the partition under ``lease``: first what is pending, then new
        entries; then settle what was taken and release the lease."""
        self._reset(lease)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._acknowledge)
                tasks.start_soon(self._maintain)
                if self.link.cluster:
                    tasks.start_soon(self._relay, lease)
                async with feed:
                    await self._until_finished(self._add_group)
                    try:
                        if await self._load(lease):
                            await self._take_over(feed)
                            await self._read_until_finished(feed)
                    except anyio.BrokenResourceError:
                        pass  # the component stopped taking: left pending
                await self.settle_all()
                if self.link.cluster:  # hand over an empty outbox when it can
                    while await self._relay_once(lease):
                        pass
                tasks.cancel_scope.cancel()
        finally:
            await self._end(lease)

    def _reset(self, lease: Lease) -> None:
        self.lease = lease
        self._leaving = anyio.Event()
        self._lost = False
        self._stopping = self.parent._stopping
        self._masker = self.parent._masker
        self._writers = self.parent._writers
        self._held.clear()
        self._unacked.clear()
        self._acks.clear()
        self._waiting.clear()
        self._dead.clear()
        self.state_writes.clear()
        self.state_outputs.clear()
        # (``_last_read`` is kept: what was read here before was delivered then)
        self._cursor = "0-0"

    async def settle_all(self) -> None:
        """Wait while what was taken under the lease is finished and acknowledged
        (or until the lease is no longer usable)."""
        clock = self.parent.leases.clock
        while self.lease is not None and self.lease.usable(clock()):
            self._release()
            await self._flush()
            if not (self._held or self._waiting or self._acks or self._dead):
                return
            await anyio.sleep(0.01)

    async def _load(self, lease: Lease) -> bool:
        """Load the window state of the partition (when its target keeps one in
        Redis) before any entry is delivered; False: it could not, and the lease
        is given up."""
        kept, keyed = self.parent.kept, self.parent.keyed_state
        if self.parent.joined is not None:  # loaded once both sides' leases are
            store, side = self.parent.joined
            await store.granted(side, lease)
        if kept is None and keyed is None:
            return True
        try:
            with anyio.fail_after(self.parent._patience):
                if kept is not None:
                    await kept.load(lease)
                if keyed is not None:
                    state_key = self.parent.state_key(self.partition)
                    await keyed.load(self.link, state_key, lease)
        except (*UNREACHABLE, TimeoutError) as exc:
            self.lose(f"its state could not be loaded: {exc!r}")
            return False
        return True

    def _settle(self, envelope: Envelope, error: Exception | None) -> None:
        if error is None and self._waiting and self.parent.keyed_state is not None:
            # Acknowledged in the order settled: a key's later state is never
            # written before its earlier item is acknowledged.
            held = self._held.pop(envelope.seq, None)
            if held is not None:
                barrier = [(w, w.queued) for w in self._writers if w.flushed < w.queued]
                self._waiting.append((held.id, barrier))
            return
        super()._settle(envelope, error)

    def bury_failed(self, envelope: Envelope, error: Exception, tries: int) -> None:
        """Dead-letter a message that failed ``tries`` deliveries in place: the
        one exception to its key's order (the later items go on without it)."""
        held = self._held.pop(envelope.seq, None)
        if held is None:
            return
        settings = self.link.settings
        self._bury(
            held.id,
            held.attempts - 1 + tries,
            held.data,
            error,
            reason=(
                f"failed {tries} deliveries in place (a keyed input tries an item "
                "again before any later item of its key, up to max_retries="
                f"{settings.redis_max_retries}); the later items of its key went on"
            ),
        )

    async def _room_for_a_batch(self) -> None:
        # A stateful input's outputs wait here for their ACK_STATE (held back while
        # a bounded output stream is full, ``max_lag``): read nothing more meanwhile.
        while len(self.state_outputs) >= self.buffer_size and not self._finished():
            await anyio.sleep(ACK_DELAY_S)
        await super()._room_for_a_batch()

    async def _read_new(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """New entries, taken only under the lease (``READ_FENCED``); when there are
        none, wait for more with a plain ``XREAD BLOCK``, which takes nothing. A
        blocking ``XREADGROUP`` would go on in Redis while this replica is paused
        (SIGSTOP, a long GC) and take entries written after its lease passed on."""
        lease = self.lease
        if lease is None:
            return []
        count = max(1, min(self.buffer_size - self.depth(), READ_BATCH))
        leases, consumer = self.parent.leases, self.link.consumer
        answer = await self._until_finished(
            lambda: leases.read(self.stream, self.group, consumer, lease, count)
        )
        if isinstance(answer, list):
            return answer
        if isinstance(answer, int):  # (None: finished meanwhile, or refused)
            self.lose("a read under its lease was refused: the lease passed on")
        elif isinstance(answer, bytes):
            client, block_ms = self.link.client, max(10, int(self._interval * 1000))
            await self._until_finished(
                lambda: client.xread({self.stream: answer}, count=1, block=block_ms)
            )
        return []

    def committed(self, entries: list[Entry]) -> None:
        """Acknowledged by a window store's commit (``windowstore``)."""
        for _, envelope in entries:
            held = self._held.pop(envelope.seq, None)
            if held is not None:
                self._unacked.discard(held.id)
                self.acknowledged += 1

    async def _end(self, lease: Lease) -> None:
        kept, keyed = self.parent.kept, self.parent.keyed_state
        if kept is not None:
            kept.drop(lease)
        if keyed is not None:
            keyed.drop(self.partition)
        if self.parent.joined is not None:
            store, side = self.parent.joined
            store.drop(side, lease)
        with anyio.CancelScope(shield=True):
            if not lease.lost:
                lease.lost = True
                with anyio.move_on_after(2):
                    with contextlib.suppress(*UNREACHABLE):  # else it expires
                        await self.parent.leases.release(lease)
            self.lease = None
            self.running = False
            self.parent.wake()

    async def _renew(self) -> None:
        # Only under a lease it may still use: else the entries are its new owner's.
        lease = self.lease
        if lease is not None and lease.usable(self.parent.leases.clock()):
            await super()._renew()

    async def _relay(self, lease: Lease) -> None:
        """Cluster: copy what was written under the lease from the partition's
        outbox on to its streams, in order, while the lease is usable. A copy made
        just before the lease passed on is copied again by the next owner: the
        receiver may see a message twice (at least once), never out of its order
        in the outbox."""
        while lease.usable(self.parent.leases.clock()):
            if await self._relay_once(lease):
                continue
            with anyio.move_on_after(RELAY_IDLE_S):
                await self.parked.wait()
            self.parked = anyio.Event()

    async def _relay_once(self, lease: Lease) -> int:
        """Copy one batch from the outbox; how many (0: empty, or lease gone)."""
        if not lease.usable(self.parent.leases.clock()):
            return 0
        client = self.link.client
        answer: Any = await self.link.call(
            partial(client.xrange, lease.outbox, "-", "+", count=WRITE_BATCH)
        )
        rows: list[tuple[bytes, dict[bytes, bytes]]] = answer or []
        if not rows:
            return 0
        runs: list[tuple[str, list[bytes]]] = []
        for _, fields in rows:  # in the outbox's order, one call per run of a target
            target = fields.get(TO, b"").decode()
            if not runs or runs[-1][0] != target:
                runs.append((target, []))
            runs[-1][1].append(fields.get(FIELD, b""))
        writers = {w.stream: w for w in self._writers}
        for target, entries in runs:
            if not lease.usable(self.parent.leases.clock()):
                return 0  # (a copy already on its way may still land: a duplicate)
            last = await self.link.call(
                partial(
                    self.link.add_entries, keys=[target], args=entries, client=client
                )
            )
            writer = writers.get(target)
            if writer is not None and last:
                # a reader of that stream in this process reads up to here before
                # it counts the stream finished
                written = stream_id(last)
                if writer.last_written is None or writer.last_written < written:
                    writer.last_written = written
        done = await self.link.call(
            partial(self.parent.leases.unpark, lease, [i for i, _ in rows])
        )
        if done < 0:
            self.lose("relaying found another replica's lease")
            return 0
        return len(rows)

    async def _take_over(self, feed: MemoryObjectSendStream[Entry]) -> None:
        """Claim every entry pending in the group (the last owner's), in stream
        order, and deliver it before any new one. The oldest goes first, alone
        (``_suspect``); a takeover is not a failure: the others are delivered
        whatever their count."""
        client = self.link.client
        cursor: bytes | str = "0-0"
        count = 1  # the oldest alone first
        while not self._finished():
            answer = await self._until_finished(
                partial(
                    client.xautoclaim,
                    self.stream,
                    self.group,
                    self.link.consumer,
                    min_idle_time=0,
                    start_id=cursor,
                    count=count,
                )
            )
            if answer is None:
                return
            cursor = answer[0]
            claimed = [(i, f) for i, f in answer[1] if f is not None]
            if count == 1 and claimed:
                count = READ_BATCH
                self._last_read = max(self._last_read, stream_id(claimed[0][0]))
                await self._suspect(feed, *claimed[0])
                if cursor in (b"0-0", "0-0"):
                    return
                continue
            count = READ_BATCH
            if claimed:
                self._last_read = max(self._last_read, stream_id(claimed[-1][0]))
            for entry_id, fields in claimed:
                # Taken over, not failed: delivered whatever its count (a
                # failure here still counts towards max_retries).
                self.redeliveries += 1
                await self._deliver(feed, entry_id, fields, attempts=1)
            if cursor in (b"0-0", "0-0"):
                return

    async def _suspect(
        self,
        feed: MemoryObjectSendStream[Entry],
        entry_id: bytes,
        fields: dict[bytes, bytes],
    ) -> None:
        """The oldest entry of a takeover: the one the last owner had in hand when
        it stopped (a partition is handled in order). If that is what stopped it
        (an item that kills every replica that takes it), it is the oldest again
        at the next takeover: the partition's suspect record counts the takeovers
        in a row it was in hand at, and past ``redis_max_takeovers`` it is
        dead-lettered. Else it is delivered, and settled before anything else of
        the partition is claimed, and before any other partition's suspect of this
        process is claimed: so a replica it kills counts it, and nothing else."""
        settings = self.link.settings
        client = self.link.client
        key = self.parent.suspect_key(self.partition)
        async with self.parent._suspecting:
            record: Any = await self.link.call(partial(client.hgetall, key))
            same = record.get(b"id") == entry_id
            times = int(record.get(b"n", 0)) + 1 if same else 1
            self.redeliveries += 1
            if times > settings.redis_max_takeovers:
                self._unacked.add(entry_id)
                self._bury(
                    entry_id,
                    times,
                    fields.get(FIELD, b""),
                    _Undelivered(f"taken over {times} times without being settled"),
                    reason=(
                        f"taken over {times} times in a row as the entry in hand "
                        "when its partition's owner stopped (max_takeovers="
                        f"{settings.redis_max_takeovers}): the replicas that took it "
                        "died or lost their lease on it"
                    ),
                )
            else:
                await self.link.call(
                    partial(client.hset, key, mapping={"id": entry_id, "n": times})
                )
                await self._deliver(feed, entry_id, fields, attempts=1)
            while entry_id in self._unacked and not self._finished():
                self._work.set()
                await anyio.sleep(ACK_DELAY_S)

    def _hold(
        self, entry_id: bytes, fields: dict[bytes, bytes], attempts: int
    ) -> Entry | None:
        lease = self.lease
        if lease is None or not lease.usable(self.parent.leases.clock()):
            return None  # left pending: the partition's next owner takes it
        entry = super()._hold(entry_id, fields, attempts)
        if entry is not None:
            self.taken += 1
            self.parent._taken[entry[1].seq] = lease
            self.parent._fences[entry[1].id] = lease
            if self.parent.keyed_state is not None:
                self.parent.keyed_state.taken(entry[1].item, lease)
        return entry

    async def _flush(self) -> None:
        """Acknowledge (and bury) under the lease, in one script each time."""
        async with self._flushing:
            self._release()
            while self._acks or self._dead:
                lease = self.lease
                if lease is None or lease.lost:
                    return
                dead, self._dead = self._dead, list[_Dead]()
                acks, self._acks = self._acks, list[bytes]()
                records = [(letter.id, self._record(letter)) for letter in dead]
                keyed = self.parent.keyed_state
                full = False
                if keyed is not None:  # each state and output written with its ack
                    keys = [self.stream, lease.key, self.dead_letters]
                    keys.append(self.parent.state_key(self.partition))
                    answer = await self.link.call(
                        partial(
                            keyed.acknowledge,
                            self.parent.leases,
                            keys,
                            self.group,
                            lease,
                            acks,
                            self.state_writes,
                            records,
                            self.state_outputs,
                        )
                    )
                    acked = answer.acked
                    if acked == ROOM:  # tried again (in order) once there is room
                        full = True
                        self.held_back += 1
                        self._acks[:0] = acks[answer.done :]
                        self._dead[:0] = dead
                        acks, dead = acks[: answer.done], list[_Dead]()
                    self.parked.set()  # on a Cluster the outputs wait in the outbox
                else:
                    acked = await self.link.call(
                        partial(
                            self.parent.leases.acknowledge,
                            self.stream,
                            self.group,
                            lease,
                            acks,
                            records,
                            self.dead_letters,
                        )
                    )
                if acked == LOST:
                    self.refused += len(acks) + len(dead)
                    self.lose("acknowledging found another replica's lease")
                    return
                self._unacked.difference_update(acks)
                self.acknowledged += len(acks)
                for letter in dead:
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
                if full:
                    await anyio.sleep(ROOM_POLL_S)


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
