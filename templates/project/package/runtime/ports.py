"""Ports and the bounded connections between them.

Every connection owns one anyio memory object stream, bounded by the connection's
``buffer_size``, and applies the connection's overflow policy on the sending side:

- ``block``: wait for room; the time spent waiting is added to the output port's
  ``blocked_seconds``.
- ``drop_newest``: never wait; a message that does not fit is dropped (counted).
- ``drop_oldest``: never wait; the oldest message of *this* connection is dropped
  (counted) to make room.

Fan-out (one output, several connections) hands every connection the same message.
Fan-in (several connections into one input) gives each connection its own stream,
drained by its own task in the receiving component, so one lossy connection can never
drop a message that arrived over a lossless one. When every sender of a stream is
closed, the receiver's loop ends: that is how a pipeline drains and stops in order.

Sending never awaits while there is room (``send_nowait``); only a full ``block``
connection falls back to the awaiting ``send``.

Components move messages in batches where they can: the receiving loop takes what
is already buffered (``Connection.take``, at most ``burst_limit`` messages) and
hands what it produced to the next stream in one operation (``OutputPort.emit_all``
-> ``Connection.put``). anyio's public API moves one item per call, so these work
on the stream's state through ``streamstate``, checked once when a connection opens
(``Connection.batched``); if not, ``take`` and ``emit_all`` use the per-item calls.

``Connection`` is what every transport shares: the bounded buffer in front of the
receiving component, and the protocol the core knows (``place``, ``offer``/``send``,
``take``/``put``, ``settled``, ``per_message``, ``stream_stats``). As it is, it is the
memory transport (package ``memory``); a transport between processes subclasses it
(``redis.connection``): the receiving component drains it the same
way, through ``receiving()``, and reports what became of each message through
``settled``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from time import monotonic
from typing import Any, ClassVar, Literal, NoReturn, get_args

import anyio
from anyio import BrokenResourceError, EndOfStream, WouldBlock
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .envelope import Entry, Envelope
from .errors import WiringError
from .histogram import AGE_BUCKETS, LATENCY_BUCKETS, Histogram
from .pii import Masker
from .streamstate import StreamClosed, StreamState, state_of
from .streamstate import put as _put
from .streamstate import take as _take

__all__ = [
    "Connection",
    "InputPort",
    "OutputPort",
    "Overflow",
    "Placement",
    "Writer",
]

Overflow = Literal["block", "drop_newest", "drop_oldest"]
OVERFLOW_POLICIES: tuple[str, ...] = get_args(Overflow)
#: background work a connection asks the service to run while it runs (a writer)
Writer = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Placement:
    """Where a connection's ends run, told to it by the service when it starts."""

    #: the sending / receiving component runs in this process
    sending: bool
    receiving: bool
    #: set when the service begins to stop
    stopping: anyio.Event = field(default_factory=anyio.Event)
    #: masks personal data in what the connection records (dead letters)
    masker: Masker = field(default_factory=Masker)
    #: the sender waits until the message is safely carried (HTTP ingress, which
    #: answers 202 only then)
    confirm: bool = False
    #: the receiving component's output ports: a message taken here is settled
    #: only once what the component sent on them for it is safely carried
    outputs: tuple[OutputPort, ...] = ()


class InputPort:
    """A named input of a component: its schema, connections and metrics.

    ``messages`` received equals ``age.count``; ``dropped`` counts messages user
    code discarded (transformer ``None``, filter ``False``, router ``None``);
    ``errors`` counts failures while handling a message from this port.
    """

    __slots__ = (
        "age",
        "component",
        "connections",
        "dropped",
        "errors",
        "holding",
        "latency",
        "name",
        "schema",
    )

    def __init__(self, component: str, name: str, schema: Any) -> None:
        self.component = component
        self.name = name
        self.schema = schema
        self.connections: list[Connection] = []
        self.age = Histogram(AGE_BUCKETS)
        self.latency = Histogram(LATENCY_BUCKETS)
        self.dropped = 0
        self.errors = 0
        #: messages the component has taken from this port as one batch and not yet
        #: handed on (read when a drain times out, to say what was abandoned)
        self.holding = 0

    @property
    def address(self) -> str:
        """``component.port``."""
        return f"{self.component}.{self.name}"

    def depth(self) -> int:
        """Messages waiting in this port's buffers (blocked senders not included)."""
        return sum(connection.depth() for connection in self.connections)

    def utilization(self) -> float:
        """How full the fullest incoming buffer is, from 0.0 to 1.0."""
        return max((c.utilization() for c in self.connections), default=0.0)

    def outstanding(self) -> int:
        """Messages for this port not yet handled: in its buffers, taken as a batch
        and not yet handed on (counted whole, though part of it may be done), or
        handed on by a sender still waiting for room here."""
        unsent = sum(connection.unsent for connection in self.connections)
        return self.depth() + self.holding + unsent


class OutputPort:
    """A named output of a component; ``emit`` hands a message to every connection.

    ``sent`` counts messages emitted (once per message, whatever the fan-out);
    ``dropped`` counts copies that an overflow policy dropped, or that had nowhere to
    go because the port is not connected.
    """

    __slots__ = (
        "_batched",
        "_send_nowait",
        "blocked_seconds",
        "component",
        "connections",
        "dropped",
        "emit",
        "errors",
        "name",
        "schema",
        "sent",
    )

    #: ``emit(entry)``: offer ``entry`` to every connection without waiting.
    #: Returns ``None`` when every connection took the message (or, by policy,
    #: dropped it), else an awaitable that finishes the delivery; the caller awaits
    #: it only then, so the common path creates no coroutine.
    emit: Callable[[Entry], Awaitable[None] | None]

    def __init__(self, component: str, name: str, schema: Any) -> None:
        self.component = component
        self.name = name
        self.schema = schema
        self.connections: list[Connection] = []
        self.sent = 0
        self.dropped = 0
        self.errors = 0
        self.blocked_seconds = 0.0
        self.emit = self._emit_each
        self._send_nowait: Callable[[Entry], None] = _not_open
        #: the one ``block`` connection that takes whole batches (``emit_all``)
        self._batched: Connection | None = None

    @property
    def address(self) -> str:
        """``component.port``."""
        return f"{self.component}.{self.name}"

    def prepare(self) -> None:
        """Choose how ``emit`` works for the connections now open.

        A port with one ``block`` connection, the common case, sends straight to
        its stream: one call less for every message, and whole batches at once
        when the connection can take them.
        """
        connections = self.connections
        sender = connections[0].sender if len(connections) == 1 else None
        self._batched = None
        if sender is not None and connections[0].overflow == "block":
            self._send_nowait = sender.send_nowait
            self.emit = self._emit_one
            if connections[0].batched:
                self._batched = connections[0]
        else:
            self.emit = self._emit_each

    @property
    def batched(self) -> bool:
        """Whether ``emit_all`` hands a whole batch to the stream at once."""
        return self._batched is not None

    @property
    def batched_connection(self) -> Connection | None:
        """The one ``block`` connection that takes whole batches, if there is one."""
        return self._batched

    def emit_all(self, entries: list[Entry]) -> Awaitable[None] | None:
        """``emit`` every entry, in order, and empty the list.

        Returns ``None`` when every connection took every message (or, by policy,
        dropped it), else an awaitable that finishes the delivery.
        """
        count = len(entries)
        if count <= 1:  # one message at a time (per-message transports, async code)
            pending = self.emit(entries[0]) if count else None
            entries.clear()
            return pending
        connection = self._batched
        if connection is not None:
            self.sent += count
            done = connection.put(entries, 0)
            if done == count:
                entries.clear()
                return None
            rest = entries[done:]
            entries.clear()
            return connection.send_all(rest)
        emit = self.emit
        for index in range(count):
            pending = emit(entries[index])
            if pending is not None:
                rest = entries[index + 1 :]
                entries.clear()
                return self._emit_rest(pending, rest)
        entries.clear()
        return None

    async def _emit_rest(self, pending: Awaitable[None], rest: list[Entry]) -> None:
        await pending
        for entry in rest:
            more = self.emit(entry)
            if more is not None:
                await more

    def _emit_one(self, entry: Entry) -> Awaitable[None] | None:
        self.sent += 1
        try:
            self._send_nowait(entry)
        except WouldBlock:
            return self.connections[0].send(entry)
        except BrokenResourceError:
            self.dropped += 1
        return None

    def _emit_each(self, entry: Entry) -> Awaitable[None] | None:
        self.sent += 1
        connections = self.connections
        for index in range(len(connections)):
            if not connections[index].offer(entry):
                return self._emit_waiting(index, entry)
        if not connections:
            self.dropped += 1
        return None

    async def send(self, item: Any, correlation_id: str | None = None) -> Envelope:
        """Send ``item`` as a new message, waiting for room if needed; its envelope."""
        now = monotonic()
        envelope = Envelope.start(item, now, correlation_id)
        pending = self.emit((now, envelope))
        if pending is not None:
            await pending
        return envelope

    async def _emit_waiting(self, index: int, entry: Entry) -> None:
        connections = self.connections
        await connections[index].send(entry)
        for connection in connections[index + 1 :]:
            if not connection.offer(entry):
                await connection.send(entry)

    def close(self) -> None:
        """Close every connection's sending side: downstream loops end once drained."""
        for connection in self.connections:
            connection.close_sender()


class Connection:
    """One bounded stream from an output port to an input port."""

    #: the transport's name (for people: repr, docs; nothing branches on it)
    transport: ClassVar[str] = "memory"
    #: each message must be handled on its own (acknowledged, encoded when sent),
    #: so the receiving loop may not move it in a batch
    per_message: ClassVar[bool] = False
    #: its two ends may run in different processes
    between_processes: ClassVar[bool] = False
    #: it can keep each key's order (``key``): the items of one key reach the
    #: receiver in the order sent and one at a time
    keeps_key_order: ClassVar[bool] = True
    #: ``key(item)``: the value whose items keep their order and are never in the
    #: receiver's method together (see ``concurrency.Window``); None: not keyed
    key: Callable[[Any], object] | None = None
    #: the most entries the receiving group may hold unread or pending before
    #: senders wait (a transport between processes; in memory ``buffer_size``
    #: bounds the stream already); None: unbounded
    max_lag: int | None = None
    #: ``settled(envelope, error)``: told when the receiver is done with a message
    #: (``error`` is None) or failed on it; ``None`` when nobody needs to know.
    settled: Callable[[Envelope, Exception | None], None] | None = None

    def __init__(
        self,
        source: OutputPort,
        target: InputPort,
        *,
        buffer_size: int,
        overflow: Overflow,
    ) -> None:
        if buffer_size < 1:
            raise WiringError(
                f"connection {source.address} -> {target.address}: buffer_size "
                f"must be at least 1, got {buffer_size!r}"
            )
        if overflow not in OVERFLOW_POLICIES:
            raise WiringError(
                f"connection {source.address} -> {target.address}: overflow "
                f"{overflow!r} is not one of {', '.join(OVERFLOW_POLICIES)}"
            )
        self.source = source
        self.target = target
        self.buffer_size = buffer_size
        self.overflow: Overflow = overflow
        self.sender: MemoryObjectSendStream[Entry] | None = None
        self.receiver: MemoryObjectReceiveStream[Entry] | None = None
        #: ``offer(entry) -> bool``: deliver without waiting, per the overflow policy;
        #: ``False`` only for a full ``block`` connection (then ``await send``).
        self.offer: Callable[[Entry], bool] = _not_open
        self._send_nowait: Callable[[Entry], None] = _not_open
        #: whether ``take`` and ``put`` move whole batches (see ``open``)
        self.batched = False
        #: messages a ``send_all`` still waits to deliver (abandoned if cancelled)
        self.unsent = 0
        self._state: StreamState[Entry] | None = None

    @property
    def stream_state(self) -> StreamState[Entry] | None:
        """The stream's state for moving entries in bulk, if ``batched`` (see
        ``streamstate``), else None."""
        return self._state

    def __repr__(self) -> str:
        return (
            f"Connection({self.source.address} -> {self.target.address}, "
            f"buffer_size={self.buffer_size}, overflow={self.overflow!r})"
        )

    def place(self, placement: Placement) -> Writer | None:
        """Open the ends that run here; what to run in the background, if anything.

        Called by the service when it starts. In memory both ends must run here
        (the service checks that); a transport between processes overrides this.
        """
        if placement.sending and placement.receiving:
            self.open()
        return None

    def open(self) -> None:
        """Create the stream; called when the service starts."""
        self.sender, self.receiver = anyio.create_memory_object_stream[Entry](
            self.buffer_size
        )
        self._send_nowait = self.sender.send_nowait
        self._state = state_of(self.sender, self.receiver)
        self.batched = self._state is not None
        self.offer = {
            "block": self._offer_block,
            "drop_newest": self._offer_drop_newest,
            "drop_oldest": self._offer_drop_oldest,
        }[self.overflow]
        self.source.prepare()

    @asynccontextmanager
    async def receiving(self) -> AsyncIterator[MemoryObjectReceiveStream[Entry]]:
        """The receiving side, for the receiver's loop; closed when the loop ends."""
        assert self.receiver is not None, "connection is not open"
        with self.receiver:
            yield self.receiver

    async def send(self, entry: Entry) -> None:
        """Deliver ``entry``, waiting for room; the wait counts as blocked time."""
        assert self.sender is not None, "connection is not open"
        started = monotonic()
        try:
            await self.sender.send(entry)
        except BrokenResourceError:
            self.source.dropped += 1
        finally:
            self.source.blocked_seconds += monotonic() - started

    def take(self, limit: int) -> list[Entry]:
        """Up to ``limit`` buffered entries, oldest first, without waiting.

        The room this frees goes to waiting senders, in the order they came (as
        ``limit`` calls of ``receive_nowait`` would do). An empty list means
        nothing is buffered: then ``receive_nowait`` (or ``receive``) says why.
        Without ``batched``, one ``receive_nowait`` per entry. Call it only from
        the receiving loop.
        """
        state = self._state
        if state is None:
            return self._take_each(limit)
        return _take(state, limit)

    def _take_each(self, limit: int) -> list[Entry]:
        assert self.receiver is not None, "connection is not open"
        receive_nowait = self.receiver.receive_nowait
        batch: list[Entry] = []
        try:
            while len(batch) < limit:
                batch.append(receive_nowait())
        except (WouldBlock, EndOfStream):
            pass  # the loop's own receive says which, when it comes to it
        return batch

    def put(self, entries: list[Entry], start: int) -> int:
        """Put ``entries[start:]`` into the stream without waiting, as far as they fit.

        Returns the index of the first entry that did not fit (``len(entries)``
        when all did, or when the receiver is gone: then they are counted as
        dropped). Needs ``batched``.
        """
        state = self._state
        assert state is not None, "put needs a batched connection"
        try:
            return _put(state, self._send_nowait, entries, start)
        except StreamClosed as closed:
            self.source.dropped += len(entries) - closed.index
            return len(entries)

    async def send_all(self, entries: list[Entry]) -> None:
        """Deliver every entry, in order, waiting for room; the wait is blocked time."""
        assert self.sender is not None, "connection is not open"
        started = monotonic()
        count = len(entries)
        done = 0
        try:
            while done < count:
                self.unsent = count - done
                await self.sender.send(entries[done])
                done = self.put(entries, done + 1) if self.batched else done + 1
            self.unsent = 0
        except BrokenResourceError:
            self.source.dropped += count - done
            self.unsent = 0
        finally:
            self.source.blocked_seconds += monotonic() - started

    def stream_stats(self) -> dict[str, Any] | None:
        """Numbers of the transport's stream behind this connection (None: in memory)."""
        return None

    def depth(self) -> int:
        """Messages in this connection's buffer."""
        if self.receiver is None:
            return 0
        return self.receiver.statistics().current_buffer_used

    def utilization(self) -> float:
        """``depth / buffer_size``."""
        return self.depth() / self.buffer_size

    def close_sender(self) -> None:
        """Close the sending side (idempotent)."""
        if self.sender is not None:
            self.sender.close()

    def close(self) -> None:
        """Close both sides (idempotent); used once the service has stopped."""
        self.close_sender()
        if self.receiver is not None:
            self.receiver.close()

    def _offer_block(self, entry: Entry) -> bool:
        try:
            self._send_nowait(entry)
        except WouldBlock:
            return False
        except BrokenResourceError:
            self.source.dropped += 1
        return True

    def _offer_drop_newest(self, entry: Entry) -> bool:
        try:
            self._send_nowait(entry)
        except (WouldBlock, BrokenResourceError):
            self.source.dropped += 1
        return True

    def _offer_drop_oldest(self, entry: Entry) -> bool:
        try:
            self._send_nowait(entry)
        except WouldBlock:
            # This connection is the stream's only sender and never waits, so the
            # head of the buffer is its own oldest message.
            assert self.receiver is not None
            self.receiver.receive_nowait()
            self.source.dropped += 1
            self._send_nowait(entry)
        except BrokenResourceError:
            self.source.dropped += 1
        return True


def _not_open(entry: Entry) -> NoReturn:
    raise RuntimeError("the connection is not open; is the service running?")
