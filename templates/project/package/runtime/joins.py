"""Joins: two keyed inputs, each item paired with the other side's items near in time.

The ``Join`` component takes ``left`` and ``right`` items and calls the user's
``match(left, right)`` for every pair of the same key whose times are at most
``within`` apart (an interval join, as Flink's and Kafka Streams' windowed
KStream-KStream join); what it returns goes to ``out`` (None drops the pair). The
buffers live in ``joinstate.py`` (plain synchronous code); the watermark and
event-time reading in ``watermark.py``. See docs/runtime.md ("Joins") for the
rules, stated once.

Time is the item's event time (``time``: a field per side, an aware ``datetime``)
or the processing time (the clock's ``wall()``). The watermark is the highest time
seen on either input; the horizon is the watermark minus ``grace``. An item is
held until its time plus ``within`` is below the horizon (no item still to come
can pair with it), then dropped: to ``unmatched_<side>`` when it never paired. An
item whose time is below the horizon when it comes is late: not joined, counted,
and sent on ``unmatched_<side>``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from inspect import isawaitable
from operator import attrgetter
from time import monotonic
from typing import Any, Protocol, TypeVar

import anyio
from pydantic import BaseModel

from .clock import Alarm, Clock, LoopClock
from .component import ERRORS_PORT, Component, RunContext
from .envelope import Entry, Envelope
from .errors import ErrorRecord, WiringError
from .intake import intake
from .joinstate import SIDES, Held, JoinState, Side
from .ports import Connection, InputPort
from .watermark import TimeReader, Watermark, time_reader

__all__ = ["Join"]

#: the output schema ``combine`` builds
M = TypeVar("M", bound=BaseModel)


class JoinPort(InputPort):
    """An input of a join: over a Redis Cluster, partition ``p`` of both inputs
    shares one hash slot (``redis/joinstore.py``), so that one script reaches
    both; the transport reads ``co_partitioned`` when it names the streams."""

    __slots__ = ()
    co_partitioned = True


class KeptJoin(Protocol):
    """A join's state kept by its inputs' transport (keyed Redis connections:
    ``redis/joinstore.py``), per partition, instead of in ``Join.buffers``."""

    @property
    def held(self) -> int:
        """Items held, over the partitions held here."""

    def check(self) -> None:
        """Refuse inputs and outputs it cannot keep exact (at setup)."""

    async def take(
        self, side: Side, batch: list[Entry]
    ) -> list[tuple[Side, Entry, Exception]]:
        """Add and commit a batch of ``side``; the items that failed (of either
        side), to report."""

    def deadline(self) -> float:
        """When (``clock.now()``) something expires by time."""

    async def on_time(self) -> None:
        """Expire (and commit) what is due by time."""


#: a key or an event time: one field name (``a.b`` nested) or function for both
#: sides, or one per side
PerSide = str | Callable[[Any], Any] | Mapping[str, str | Callable[[Any], Any]]


class Join(Component):
    """Two keyed inputs, ``left`` and ``right``; ``match(left, right)`` per pair.

    Every left item is paired with every right item of the same key whose time
    is within ``within`` seconds of its own, before or after (both ends
    included), whichever comes first; ``match`` runs when the second of the two
    comes, and what it returns is sent on ``out`` (None: the pair is dropped).
    ``grace`` (event time only) is how far behind the watermark an item may
    still come and be joined. With ``unmatched``, the outputs
    ``unmatched_left`` and ``unmatched_right`` receive each item that was
    dropped without a partner: it expired, came late, was evicted at the cap,
    or was still held when the input ended (drain). At most ``max_buffered``
    items are held at once: past it the oldest is dropped early (counted in
    ``evicted``; one warning). An item without a key or a time, or on which
    ``match`` raises, is reported like a failure in user code (``errors``).

    Keys are the keyed connections', or ``key`` (a field name, a function, or a
    mapping ``{"left": ..., "right": ...}``) when given.
    """

    kind = "join"
    default_inputs = {"left": Any, "right": Any}

    def __init__(
        self,
        name: str,
        *,
        within: float,
        time: PerSide | None = None,
        grace: float = 0.0,
        key: PerSide | None = None,
        schema: Any = Any,
        unmatched: bool = False,
        errors: bool = False,
        max_buffered: int = 100_000,
        idle_after: float | None = None,
        clock: Clock | None = None,
        inputs: Mapping[str, Any] | None = None,
        burst_limit: int = 256,
    ) -> None:
        inputs = dict(self.default_inputs if inputs is None else inputs)
        if sorted(inputs) != ["left", "right"]:
            raise WiringError(
                f"join {name!r} needs exactly two input ports, left and right, "
                f"got {sorted(inputs)}"
            )
        outputs: dict[str, Any] = {"out": schema}
        if unmatched:
            outputs["unmatched_left"] = inputs["left"]
            outputs["unmatched_right"] = inputs["right"]
        if errors:
            outputs[ERRORS_PORT] = ErrorRecord
        super().__init__(name, inputs=inputs, outputs=outputs, burst_limit=burst_limit)
        self.inputs = {
            port.name: JoinPort(name, port.name, port.schema)
            for port in self.inputs.values()
        }
        self.within = _check(name, "within", within)
        self.grace = _check(name, "grace", grace, allow_zero=True)
        self.event_time = time is not None
        if not self.event_time and grace:
            raise WiringError(
                f"join {name!r}: grace is for event time (set time), not "
                "processing time, whose items are never out of order"
            )
        self.times: dict[Side, TimeReader] | None = (
            None
            if time is None
            else {side: time_reader(f) for side, f in _per_side(name, "time", time)}
        )
        self.keys: dict[Side, Callable[[Any], Any]] | None = (
            None
            if key is None
            else {side: _reader(f) for side, f in _per_side(name, "key", key)}
        )
        if max_buffered < 1:
            raise WiringError(f"join {name!r}: max_buffered must be at least 1")
        self.max_buffered = max_buffered
        self._clock: Clock = clock or LoopClock()
        self.watermark = Watermark(
            self._clock,
            (
                self.within + self.grace
                if idle_after is None
                else _check(name, "idle_after", idle_after)
            ),
        )
        self.buffers = JoinState(self.within, self._paired, self._unmatched)
        self.matched_pairs = 0
        self.unmatched_items = 0
        self.late_items = 0
        self.evicted = 0
        self._warned = False
        self._entries: list[Entry] = []
        self._dropped: dict[Side, list[Entry]] = {"left": [], "right": []}
        self._unmatched_ports = (
            {side: self.outputs[f"unmatched_{side}"] for side in SIDES}
            if unmatched
            else None
        )
        #: pairs ``match`` raised on, with the arriving item (reported by its loop)
        self._failed: list[tuple[Envelope, Exception]] = []
        #: what an ``async def match`` returned, with the arriving item: awaited
        #: by the input loop once the batch is in
        self._awaiting: list[tuple[Envelope, Awaitable[Any]]] = []
        # made in ``serve``: anyio's primitives belong to the running loop
        self._sending: anyio.Lock | None = None
        #: the timer's wait (closes and expiries by the clock)
        self.alarm = Alarm()
        #: the state kept by the inputs' transport (over Redis), else None
        self.kept: KeptJoin | None = None

    def match(self, left: Any, right: Any) -> Any:
        """The item made of a pair of the same key near in time, or None to drop
        the pair; override it (the default sends the pair as a tuple). It may be
        an ``async def``: it is then awaited once the batch holding the pair's
        second item is in (its items leave after the batch's other pairs')."""
        return (left, right)

    def combine(self, left: Any, right: Any, into: type[M]) -> M:
        """An ``into`` item made of the fields the pair has by its names
        (``left``'s first, then ``right``'s): a starting point for ``match``.
        ``into`` is the output schema, passed so that the result is typed."""
        data = {**_fields(right), **_fields(left)}
        return into.model_validate(
            {name: data[name] for name in into.model_fields if name in data}
        )

    @property
    def clock(self) -> Clock:
        """What the timer and the watermark's idleness read (a test sets its own)."""
        return self._clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self._clock = self.watermark.clock = clock

    @property
    def buffered(self) -> int:
        """Items held now, both sides."""
        return self.buffers.held if self.kept is None else self.kept.held

    def watermark_lag(self) -> float:
        """How far the watermark is behind the clock's wall time, in seconds."""
        return self.watermark.lag()

    async def setup(self) -> None:
        """Refuse an input the join cannot take: unkeyed, or over a transport
        that does not keep its state (over Redis: keyed connections do)."""
        for port in self.inputs.values():
            for connection in port.connections:
                self._check_input(port, connection)
        if self.kept is not None:
            self.kept.check()

    def _check_input(self, port: InputPort, connection: Connection) -> None:
        if connection.settled is not None:
            self._keep_by(port, connection)
            return
        if self.kept is not None:
            raise WiringError(
                f"join {self.name!r}: over Redis both inputs come over keyed Redis "
                f"connections; its {port.name} input is in memory"
            )
        if connection.key is None and self.keys is None:
            raise WiringError(
                f"join {self.name!r}: its {port.name} input must be keyed (connect "
                "it with key=...) or the join given a key"
            )

    def _keep_by(self, port: InputPort, connection: Connection) -> None:
        """An input over Redis: the keyed connections keep the state, per
        partition (or the input is refused, saying why)."""
        keep = getattr(connection, "keep_join", None)
        where = (
            f"join {self.name!r}: its {port.name} input comes over "
            f"{connection.transport!r}"
        )
        if keep is None:
            raise WiringError(
                f"{where}, which cannot keep its state (a keyed Redis connection "
                "does, per partition, in Redis)"
            )
        if connection.key is None:
            raise WiringError(
                f"{where}, so it must be a keyed connection (key=...): keyed Redis "
                "connections keep the join's state per partition, in Redis"
            )
        if self.keys is not None:
            raise WiringError(
                f"{where}: its key is the keyed connections' (their partitions "
                "hold whole keys); give the join no key of its own"
            )
        side: Side = "left" if port.name == "left" else "right"
        self.kept = keep(self, side, self.kept)

    def note_evicted(self) -> None:
        """An item was dropped early at the cap: counted, one warning."""
        self.evicted += 1
        if not self._warned:
            self._warned = True
            self.log.warning(
                "join %s: %d items held, the cap (max_buffered); the oldest are "
                "dropped early from now on (counted in portwright_join_evicted)",
                self.name,
                self.max_buffered,
            )

    def rearm(self) -> None:
        """The kept state changed outside the input loop (a partition's state was
        loaded): the timer looks at its deadline again."""
        self.alarm.wake()

    async def serve(self, context: RunContext) -> None:
        """Take both inputs, expire held items on time meanwhile; at the end (a
        drain), drop every held item (the unmatched ones to ``unmatched``)."""
        self.watermark.advanced_at = self.clock.now()
        self._sending, self.alarm = anyio.Lock(), Alarm()
        if self.kept is not None:
            await self._serve_kept(self.kept)
            return
        async with anyio.create_task_group() as timer:
            timer.start_soon(self._on_time)
            async with anyio.create_task_group() as group:
                for port in self.inputs.values():
                    for connection in port.connections:
                        group.start_soon(self._receive, port, connection)
            timer.cancel_scope.cancel()
        self.buffers.clear()
        await self._flush()

    async def _serve_kept(self, kept: KeptJoin) -> None:
        """``serve`` over Redis: the state is the partitions', in Redis, so a
        replica that stops drops nothing (the partitions' next owners go on)."""
        async with anyio.create_task_group() as timer:
            timer.start_soon(self.alarm.serve, self.clock, kept)
            async with anyio.create_task_group() as group:
                for port in self.inputs.values():
                    for connection in port.connections:
                        group.start_soon(self._receive_kept, port, connection, kept)
            timer.cancel_scope.cancel()

    async def _receive_kept(
        self, port: InputPort, connection: Connection, kept: KeptJoin
    ) -> None:
        side: Side = "left" if port.name == "left" else "right"

        async def handle(batch: list[Entry]) -> None:
            for failed_side, entry, exc in await kept.take(side, batch):
                await self.fail(self.inputs[failed_side], entry[1], exc)
            if self.alarm.unarmed and kept.held:
                self.alarm.wake()

        await intake(port, connection, self.burst_limit, handle)

    async def _receive(self, port: InputPort, connection: Connection) -> None:
        side: Side = "left" if port.name == "left" else "right"
        key = self.keys[side] if self.keys is not None else connection.key
        assert key is not None

        async def handle(batch: list[Entry]) -> None:
            self._add_all(side, batch, key)
            while self._awaiting:
                cause, pending = self._awaiting.pop(0)
                try:
                    self._made(cause, await pending)
                except Exception as raised:  # the user's match raised
                    self._failed.append((cause, raised))
            while self._failed:
                envelope, exc = self._failed.pop(0)
                await self.fail(port, envelope, exc)
            await self._flush()

        await intake(port, connection, self.burst_limit, handle)

    def _add_all(
        self, side: Side, batch: list[Entry], key: Callable[[Any], Any]
    ) -> None:
        """The synchronous core: pair and hold a batch, expiring what the
        horizon passes."""
        state, watermark, grace = self.buffers, self.watermark, self.grace
        times = None if self.times is None else self.times[side]
        t = 0.0
        if times is None:
            # processing time: one reading per batch; never late
            t = self.clock.wall()
            if watermark.see(t):
                state.expire(t)
        for entry in batch:
            envelope = entry[1]
            item = envelope.item
            try:
                k = key(item)
                if times is not None:
                    t = times(item)
                    if watermark.see(t):
                        state.expire(t - grace)
                    if t < watermark.value - grace:
                        self.late_items += 1
                        self._unmatched(side, Held(t, envelope))
                        continue
                if state.held >= self.max_buffered:
                    self._evict()
                state.add(side, k, t, envelope)
            except Exception as exc:  # no key or time
                self._failed.append((envelope, exc))
        if self.alarm.unarmed and state.held:
            self.alarm.wake()

    def _paired(self, left: Held, right: Held, arriving: Side) -> None:
        """A pair: ``match`` runs, and what it returns is sent, caused by the
        item that came last."""
        self.matched_pairs += 1
        cause: Envelope = (left if arriving == "left" else right).payload
        try:
            result = self.match(left.payload.item, right.payload.item)
        except Exception as exc:  # reported by the input loop, on the arriving item
            self._failed.append((cause, exc))
            return
        if isawaitable(result):  # an ``async def match``: the input loop awaits it
            self._awaiting.append((cause, result))
            return
        self._made(cause, result)

    def _made(self, cause: Envelope, result: Any) -> None:
        """What ``match`` returned for a pair: sent, unless None."""
        if result is None:
            return
        now = monotonic()
        self._entries.append((now, cause.derive(result, now, f"{self.name}.out")))

    def _unmatched(self, side: Side, held: Held) -> None:
        """An item dropped without a partner: counted, and sent when the join has
        ``unmatched`` outputs."""
        self.unmatched_items += 1
        if self._unmatched_ports is not None:
            envelope: Envelope = held.payload
            now = monotonic()
            by = f"{self.name}.unmatched_{side}"
            self._dropped[side].append((now, envelope.derive(envelope.item, now, by)))

    def _evict(self) -> None:
        """The cap is reached: drop the oldest held item early (one warning)."""
        self.note_evicted()
        self.buffers.evict()

    async def _flush(self) -> None:
        """Send the pairs made and the items dropped; one sender at a time, so
        that the input loops and the timer keep the order."""
        assert self._sending is not None
        async with self._sending:
            # emit_all empties each list as it takes the entries
            if self._entries and (
                pending := self.outputs["out"].emit_all(self._entries)
            ):
                await pending
            if self._unmatched_ports is None:
                return
            for side, port in self._unmatched_ports.items():
                dropped = self._dropped[side]
                if dropped and (pending := port.emit_all(dropped)):
                    await pending

    def _deadline(self) -> float:
        """When (``clock.now()``) the timer has something to do; inf: nothing."""
        if not self.buffers.held:
            return math.inf
        if self.event_time:
            return self.watermark.idle_deadline()
        # Processing time: when the wall clock passes the oldest item's expiry
        # (just past it: an item whose time plus within is the horizon stays).
        clock = self.clock
        expiry = math.nextafter(self.buffers.next_expiry(), math.inf)
        return clock.now() + max(0.0, expiry - clock.wall())

    async def _on_time(self) -> None:
        """Expire held items by the clock: processing-time items once ``within``
        has passed, and event-time items of inputs quiet for ``idle_after``."""
        clock, state = self.clock, self.buffers
        while True:
            deadline = self._deadline()
            await self.alarm.wait(clock, deadline)
            if clock.now() < self._deadline():
                continue  # woken by a first item, or items moved the deadline on
            if self.event_time:
                state.expire(self.watermark.idle() - self.grace)
            else:
                # Just past the expiry it waited for (the wall and monotonic
                # readings may round apart).
                horizon = max(
                    clock.wall(), math.nextafter(state.next_expiry(), math.inf)
                )
                self.watermark.see(horizon)
                state.expire(horizon)
            # Shielded: the drain cancels this task, and what emit_all had taken
            # from the list but not yet sent would be lost with it.
            with anyio.CancelScope(shield=True):
                await self._flush()


def _fields(item: Any) -> dict[str, Any]:
    """An item's fields by name, as they are (nested models stay models)."""
    if isinstance(item, BaseModel):
        return dict(item)
    return dict(item) if isinstance(item, Mapping) else {}


def _reader(field: str | Callable[[Any], Any]) -> Callable[[Any], Any]:
    return attrgetter(field) if isinstance(field, str) else field


def _per_side(
    name: str, what: str, value: PerSide
) -> list[tuple[Side, str | Callable[[Any], Any]]]:
    """``value`` for each side: the same for both, or a mapping per side."""
    if isinstance(value, Mapping):
        if sorted(value) != ["left", "right"]:
            raise WiringError(
                f"join {name!r}: {what} per side must name left and right, "
                f"got {sorted(value)}"
            )
        return [(side, value[side]) for side in SIDES]
    return [(side, value) for side in SIDES]


def _check(name: str, what: str, seconds: float, *, allow_zero: bool = False) -> float:
    """A duration in seconds: positive (or zero where allowed) and finite."""
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise WiringError(
            f"join {name!r}: {what} must be a positive number of seconds, "
            f"got {seconds!r}"
        )
    return float(seconds)
