"""The writing end of a Redis connection: one stream, written from this process.

An output port whose connections Redis carries writes one stream, whatever its
fan-out: its ``RedisPublisher``, made by the port's first connection that sends from
here and shared by the others (each a consumer group of that stream). Messages are
encoded when queued and written in batches (one script call each, ``ADD_ENTRIES``);
the outbox holds at most ``buffer_size`` messages, so a full one makes senders wait
(``block``) as a full memory stream would.

Under ``max_lag`` (``bound``) a write adds only what every bounded consumer group has
room for (``ADD_BOUNDED``: its unread entries plus its pending ones within the bound,
checked in the script that adds them, so no two writers can overshoot it); the rest
stays in the outbox, which fills, so senders wait and HTTP ingress answers 503, as
at a full memory buffer. Nothing is trimmed to make room: room comes from readers.

Readers in this process listen (``listen``) to hear when a write is done: the
connection's own reader, to know when the stream is finished, and the readers of
the component that sends here, which acknowledge an entry only once what came of it
is written.

Fencing (keyed connections, ``partitioned``): a message made from an input of a
partition is written only under that partition's lease. The reader of such an input
says which lease each message depends on (``fence_by``). A message whose lease this
replica knows to be lost is not queued at all; on a single Redis the write checks
every message's lease token in the same script as its ``XADD`` (``ADD_FENCED``), so
a replica paused past its lease writes nothing for the partitions it lost. On a
Redis Cluster the output stream is in another slot than the lease: only the local
check applies (docs/redis.md).

A stateful component's outputs made of a keyed Redis input are not queued here: the
input's connection takes them (``take_by``) and writes them in the script that
acknowledges the input and writes its key's state (``statestore``), then says how
far it wrote (``wrote``), for the readers of the stream in this process.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from functools import partial
from time import monotonic

import anyio
from anyio.lowlevel import checkpoint

from ..envelope import Entry, Envelope
from ..ports import OutputPort
from .leases import Lease, Leases
from .link import RedisLink, StreamId, stream_id
from .wire import encode

__all__ = ["RedisPublisher"]

WRITE_BATCH = 512
#: how long a writer held back by ``max_lag`` waits before it looks for room again
ROOM_POLL_S = 0.05
#: how long a confirmed sender that gave up waits for a write already under way (s)
CONFIRM_GRACE_S = 5.0


class RedisPublisher:
    """Writes what an output port sends to its stream; see the module's description."""

    def __init__(
        self,
        link: RedisLink,
        stream: str,
        source: OutputPort,
        *,
        buffer_size: int,
        confirm: bool,
        owner: object,
    ) -> None:
        self.link = link
        #: the connection that made it and runs it (the port's others share it)
        self.owner = owner
        self.stream = stream
        self.source = source
        self.buffer_size = buffer_size
        #: each sender waits until Redis has its message (HTTP ingress, which
        #: answers 202 only then)
        self.confirm = confirm
        #: messages queued, and of them written (or withdrawn), since the start
        self.queued = 0
        self.flushed = 0
        #: the id of the last entry written
        self.last_written: StreamId | None = None
        self.sender_closed = False
        # encoded messages, oldest first; ``None`` where a confirmed sender gave up
        # before its message was written (withdrawn: counted, never written)
        self._outbox: deque[bytes | None] = deque()
        #: how many messages at the head of the outbox the writer is writing now
        self._writing = 0
        #: confirmed senders waiting now; the write under way (to abandon)
        self._confirming = 0
        self._write_scope: anyio.CancelScope | None = None
        self._more = anyio.Event()
        self._written = anyio.Event()
        self._listeners: list[Callable[[], None]] = []
        #: each bounded consumer group of the stream, and its ``max_lag``
        self.bounds: dict[str, int] = {}
        #: which lease each message depends on (``fence_by``); the outbox's leases
        self._fences: list[Callable[[Envelope], Lease | None]] = []
        self._leases: deque[Lease | None] = deque()
        self._fenced: Leases | None = None
        self._parked: Leases | None = None
        #: messages not written because the lease they depend on was lost
        self.refused = 0
        #: who writes some messages in a script of its own instead (``take_by``)
        self._takers: list[Callable[[RedisPublisher, Entry], bool]] = []

    def fence_by(
        self, fence: Callable[[Envelope], Lease | None], leases: Leases
    ) -> None:
        """Write a message only while the lease ``fence(envelope)`` names holds
        (None: it depends on none); see the module's description."""
        self._fences.append(fence)
        if len(self._leases) < len(self._outbox):  # queued before: depend on none
            self._leases.extendleft([None] * (len(self._outbox) - len(self._leases)))
        # One script reaches the lease and this stream only on one node; on a
        # Cluster what is written under a lease goes to its partition's outbox.
        if self.link.cluster:
            self._parked = leases
        else:
            self._fenced = leases

    def _fence(self, envelope: Envelope) -> Lease | None:
        for fence in self._fences:
            lease = fence(envelope)
            if lease is not None:
                return lease
        return None

    def take_by(self, take: Callable[[RedisPublisher, Entry], bool]) -> None:
        """Hand each message to ``take(self, entry)`` first: True, it took it (a
        stateful input's ``ACK_STATE`` writes it with the input's ack and state,
        ``statestore``), and it is not queued here."""
        self._takers.append(take)

    def wrote(self, last: bytes) -> None:
        """A taker's script added messages to the stream, the last as ``last``."""
        written = stream_id(last)
        if self.last_written is None or self.last_written < written:
            self.last_written = written
        self._progressed()

    def bound(self, group: str, max_lag: int) -> None:
        """Write only while ``group`` has fewer than ``max_lag`` entries unread or
        pending (its connection's ``max_lag``)."""
        self.bounds[group] = max_lag

    def listen(self, progressed: Callable[[], None]) -> None:
        """Call ``progressed()`` whenever a write is done (or abandoned)."""
        self._listeners.append(progressed)

    def _progressed(self) -> None:
        for progressed in self._listeners:
            progressed()

    def offer(self, entry: Entry) -> bool:
        """Queue the message without waiting, if there is room.

        Nobody waits for Redis here: the input a message came from is acknowledged
        only once it is written (see ``RedisConnection._settle``).
        """
        if self.confirm or len(self._outbox) >= self.buffer_size:
            return False
        self._queue(entry)
        return True

    async def send(self, entry: Entry) -> None:
        """Queue the message, waiting for room; with ``confirm``, until it is written."""
        started = monotonic()
        try:
            while len(self._outbox) >= self.buffer_size:
                await self._written.wait()
            self._queue(entry)
            if self.confirm:
                await self._confirmed(self.queued)
        finally:
            self.source.blocked_seconds += monotonic() - started

    async def _confirmed(self, target: int) -> None:
        """Wait until the ``target``-th queued message is in Redis.

        A sender that gives up (HTTP ingress answering 503) must not have its
        message written anyway, or a client's retry would add it twice: a message
        still waiting in the outbox is withdrawn. One the writer is sending right
        now cannot be; its fate is known within a round trip, so the sender waits
        for it (shielded, at most ``CONFIRM_GRACE_S``) and returns normally when it
        was written: the message was accepted after all.
        """
        self._confirming += 1
        try:
            await self._confirmation(target)
        finally:
            self._confirming -= 1
            self._abandon_if_unaccepted()

    async def _confirmation(self, target: int) -> None:
        try:
            while self.flushed < target:
                await self._written.wait()
        except anyio.get_cancelled_exc_class():
            position = target - self.flushed - 1
            if position < 0:
                return  # written just as the wait was cancelled
            if position >= self._writing:
                self._outbox[position] = None
                raise
            with anyio.CancelScope(shield=True), anyio.move_on_after(CONFIRM_GRACE_S):
                while self.flushed < target:
                    position = target - self.flushed - 1
                    if position >= self._writing:  # held back by max_lag: unwritten
                        self._outbox[position] = None
                        break
                    await self._written.wait()
            if self.flushed < target:
                raise

    def _queue(self, entry: Entry) -> None:
        if self._takers and any(take(self, entry) for take in self._takers):
            return
        enqueued, envelope = entry
        if self._fences:
            lease = self._fence(envelope)
            if lease is not None and not lease.usable(monotonic()):
                # its partition has passed on: its new owner writes what comes of it
                self.refused += 1
                return
            self._leases.append(lease)
        self._outbox.append(encode(envelope, enqueued))
        self.queued += 1
        self._more.set()

    async def write(self) -> None:
        """Write the queued messages to the stream, in batches, until the sender has
        closed and everything is written; run by the service."""
        client = self.link.client
        add_entries = self.link.add_entries
        while True:
            if not self._outbox:
                if self.sender_closed:
                    return
                await self._more.wait()
                self._more = anyio.Event()
                # Let the senders that are ready finish their bursts first: one
                # pipeline then carries them all, not a round trip for each.
                await checkpoint()
                continue
            taken = list(itertools.islice(self._outbox, WRITE_BATCH))
            fences = list(itertools.islice(self._leases, WRITE_BATCH))
            batch = [data for data in taken if data is not None]
            done = len(taken)
            if batch:
                self._writing = len(taken)
                scope = self._write_scope = anyio.CancelScope()
                try:
                    with scope:
                        if self.bounds:
                            added, last = await self._add_bounded(batch)
                            if added < len(batch):
                                done = _through(taken, added)
                        elif self._fenced is not None and fences:
                            last = await self._add_fenced(taken, fences)
                        elif self._parked is not None and fences:
                            last = await self._park(taken, fences)
                        else:
                            last = await self.link.call(
                                partial(
                                    add_entries,
                                    keys=[self.stream],
                                    args=batch,
                                    client=client,
                                )
                            )
                finally:
                    self._writing = 0
                    self._write_scope = None
                if scope.cancelled_caught:
                    self._abandon()
                    return
                if last:
                    self.last_written = stream_id(last)
            for _ in range(done):
                self._outbox.popleft()
            if fences:
                for _ in range(done):
                    self._leases.popleft()
            self.flushed += done
            # (also when a bounded group held messages back: a confirmed sender
            # that gave up on one of them withdraws it now)
            written, self._written = self._written, anyio.Event()
            written.set()
            if done:
                self._progressed()
            if done < len(taken):  # a bounded group is full: wait for its readers
                await anyio.sleep(ROOM_POLL_S)

    async def _add_fenced(
        self, taken: list[bytes | None], fences: list[Lease | None]
    ) -> bytes | None:
        """Add each message whose lease still holds (``ADD_FENCED``): the last id."""
        leases = self._fenced
        assert leases is not None
        pairs = zip(taken, fences, strict=True)
        entries = [(lease, data) for data, lease in pairs if data is not None]
        _, refused, last = await self.link.call(
            partial(leases.add, self.stream, entries)
        )
        if refused:
            self.refused += refused
            self.link.log.warning(
                "%s: %d messages not written to %s: the partition they came from "
                "has passed to another replica",
                self.source.address,
                refused,
                self.stream,
            )
        return last

    async def _park(
        self, taken: list[bytes | None], fences: list[Lease | None]
    ) -> bytes | None:
        """Cluster: each message made under a lease goes to that partition's outbox
        (``PARK``, fenced), which its relay copies on here; the others are written
        here directly. The last id written here, if any."""
        leases = self._parked
        assert leases is not None
        direct: list[bytes] = []
        parked: dict[tuple[str, str], tuple[Lease, list[bytes]]] = {}
        for data, lease in zip(taken, fences, strict=True):
            if data is None:
                continue
            if lease is None:
                direct.append(data)
            else:
                parked.setdefault((lease.key, lease.token), (lease, []))[1].append(data)
        for lease, entries in parked.values():
            put = await self.link.call(
                partial(leases.park, lease, self.stream, entries)
            )
            if put < 0:
                self.refused += len(entries)
                self.link.log.warning(
                    "%s: %d messages not written to %s: the partition they came "
                    "from has passed to another replica",
                    self.source.address,
                    len(entries),
                    self.stream,
                )
        if not direct:
            return None
        last: bytes | None = await self.link.call(
            partial(
                self.link.add_entries,
                keys=[self.stream],
                args=direct,
                client=self.link.client,
            )
        )
        return last

    async def _add_bounded(self, batch: list[bytes]) -> tuple[int, bytes | None]:
        """Add what the bounded groups have room for: how many, and the last id."""
        bounds = [str(len(self.bounds))]
        for group, max_lag in self.bounds.items():
            bounds += [group, str(max_lag)]
        script = self.link.add_bounded
        added, last = await self.link.call(
            partial(
                script,
                keys=[self.stream],
                args=[*bounds, *batch],
                client=self.link.client,
            )
        )
        return int(added), last or None

    def close_sender(self) -> None:
        """The sending component finished: write what is queued, then end."""
        self.sender_closed = True
        self._more.set()
        self._abandon_if_unaccepted()

    def close(self) -> None:
        """End the writer (idempotent); used once the service has stopped."""
        self.sender_closed = True
        self._more.set()

    def _abandon_if_unaccepted(self) -> None:
        """Stop a write that carries nothing accepted, so the drain need not wait.

        With ``confirm`` (HTTP ingress), a message counts as accepted only once it
        is written; when the sender has closed and no sender still waits, every
        message left was answered 503, and a write retried while Redis is
        unreachable would hold the stop for the whole drain timeout.
        """
        scope = self._write_scope
        if (
            scope is not None
            and self.confirm
            and self.sender_closed
            and not self._confirming
        ):
            scope.cancel()

    def _abandon(self) -> None:
        left = sum(data is not None for data in self._outbox)
        self.link.log.warning(
            "%s: %d messages answered 503 are not written to %s (stopping while "
            "redis at %s is unreachable)",
            self.source.address,
            left,
            self.stream,
            self.link.where,
        )
        self._outbox.clear()
        self._leases.clear()
        self.flushed = self.queued
        written, self._written = self._written, anyio.Event()
        written.set()
        self._progressed()


def _through(taken: list[bytes | None], added: int) -> int:
    """How many messages of ``taken`` (withdrawn ones included) the first ``added``
    written ones reach: the head of the outbox that is done."""
    if added == 0:
        return 0
    seen = 0
    for position, data in enumerate(taken):
        if data is not None:
            seen += 1
            if seen == added:
                return position + 1
    return len(taken)
