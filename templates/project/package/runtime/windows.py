"""Windows: per key, the items of a span of time (or of N items), folded into a value.

The ``Window`` component takes one keyed input and emits, per key and window, an
item with ``key``, ``start``, ``end`` and ``value`` (the aggregate's result). How
windows are laid out and closed lives in ``windowstate.py`` (one store per shape): plain
synchronous code, so that the component's loop is a thin async shell around it.
See docs/runtime.md ("Windows") for the rules, stated once.

Time is in seconds (a float): the item's event time (``time``: a field holding an
aware ``datetime``) or the processing time (the injected clock's ``wall()``). The
watermark is the highest time seen on the component's input: in memory a keyed
connection is one partition, so it is per component. A window closes once the
watermark reaches its end plus ``grace``; when no item has advanced the watermark
for ``idle_after`` of the clock (default ``size + grace``), the watermark moves on
by that much, so that a quiet input still gets its results. The input loop and the watermark are
the ones joins use (``intake.py``, ``watermark.py``).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from inspect import isclass
from operator import attrgetter, itemgetter
from time import monotonic
from typing import Any, Literal, Protocol

import anyio
from anyio import EndOfStream
from pydantic import BaseModel, ConfigDict

from .aggregates import Aggregate, Count
from .clock import Alarm, Clock, LoopClock
from .component import ERRORS_PORT, Component, RunContext
from .envelope import Entry, Envelope, new_envelope, next_seq
from .errors import ErrorRecord, WiringError
from .intake import intake
from .ports import Connection, InputPort
from .watermark import Watermark
from .windowstate import AlignedWindows, Closed, CountWindows, SlidingWindows, Store

__all__ = ["Window", "WindowResult", "WindowType"]

_ENVELOPE, _ITEM, _TIMESTAMP = itemgetter(1), attrgetter("item"), datetime.timestamp
#: how many window boundaries' datetimes ``Window._moment`` keeps
_MOMENTS = 4096


def _new_slot() -> dict[Any, Any]:
    """A start's windows, by key (typed: the checkers cannot infer ``{}``)."""
    return {}


class KeptWindows(Protocol):
    """A window's state kept by its input's transport (a keyed Redis connection:
    ``redis/windowstore.py``), per partition, instead of in ``Window.store``."""

    @property
    def open(self) -> int:
        """Windows open, over the partitions held here."""

    async def take(self, batch: list[Entry]) -> list[tuple[Entry, Exception]]:
        """Add and commit a batch; the items that failed, to report."""

    def deadline(self) -> float:
        """When (``clock.now()``) something closes by time."""

    async def on_time(self) -> None:
        """Close (and commit) what is due by time."""


WindowType = Literal["tumbling", "hopping", "sliding"]
Emit = Literal["final", "every"]


class WindowResult(BaseModel):
    """One window's value: the generic output schema of a ``Window``.

    The runtime cannot know the value's type (it is the aggregate's), so this one
    types ``key`` and ``value`` as ``Any``; pass ``schema`` (a model with the same
    four fields, typed) to have the output validated as the blueprint says.
    """

    model_config = ConfigDict(frozen=True)

    key: Any
    start: datetime
    end: datetime
    value: Any


class Window(Component):
    """One keyed input; per key and window, the ``aggregate`` of the items.

    Windows are ``tumbling`` (``size``), ``hopping`` (``size`` every ``hop``) or
    ``sliding`` (``size`` before each item), in seconds; or ``count`` items per
    key. Their time is the item's ``time`` field (an aware ``datetime``: event
    time) or, without one, the clock's (processing time). ``emit`` ``final`` sends
    each window once, when it closes; ``every`` sends its value at each update
    (and nothing more when it closes). An item whose windows have all closed is
    late: counted, and sent on the ``late`` output when there is one (``late``).
    An item without a key or a time, or on which the aggregate raises, is
    reported like a failure in user code (``errors``: an ``errors`` output). At most
    ``max_open`` windows are open at once: past it, the oldest one is closed early
    (counted in ``evicted``; one warning). When the input ends (drain), every open
    window is closed and sent as it stands.

    The key is the keyed connection's, or ``key`` (a field name, ``a.b`` nested, or
    a function) when given.
    """

    kind = "window"
    default_inputs = {"in": Any}

    def __init__(
        self,
        name: str,
        *,
        size: float | None = None,
        hop: float | None = None,
        count: int | None = None,
        type: WindowType = "tumbling",
        time: str | Callable[[Any], datetime] | None = None,
        grace: float = 0.0,
        aggregate: Aggregate | None = None,
        emit: Emit = "final",
        key: str | Callable[[Any], Any] | None = None,
        schema: type[BaseModel] = WindowResult,
        late: bool = False,
        errors: bool = False,
        max_open: int = 100_000,
        idle_after: float | None = None,
        clock: Clock | None = None,
        inputs: Mapping[str, Any] | None = None,
        burst_limit: int = 256,
    ) -> None:
        outputs: dict[str, Any] = {"out": schema}
        if late:
            outputs["late"] = Any
        if errors:
            outputs[ERRORS_PORT] = ErrorRecord
        super().__init__(name, inputs=inputs, outputs=outputs, burst_limit=burst_limit)
        if len(self.inputs) != 1:
            raise WiringError(f"window {name!r} needs exactly one input port")
        self.aggregate = aggregate or Count()
        if emit not in ("final", "every"):
            raise WiringError(f"window {name!r}: emit {emit!r} is not final or every")
        self.schema = schema
        self.every = emit == "every"
        self.grace = _check(name, "grace", grace, allow_zero=True)
        self.event_time = time is not None
        if not self.event_time and grace:
            raise WiringError(
                f"window {name!r}: grace is for event time (set time), not "
                "processing time, whose items are never out of order"
            )
        self.time: Callable[[Any], Any] | None = (
            attrgetter(time) if isinstance(time, str) else time
        )
        self.key = attrgetter(key) if isinstance(key, str) else key
        if max_open < 1:
            raise WiringError(f"window {name!r}: max_open must be at least 1")
        self.max_open = max_open
        self.store = self._store(name, type, size, hop, count)
        self._tumbling = (
            self.event_time
            and emit == "final"
            and isinstance(self.store, AlignedWindows)
            and self.store.hop == self.store.size
        )
        self.size = 0.0 if size is None else size
        if count is not None and idle_after is not None:
            raise WiringError(f"window {name!r}: count windows do not close on time")
        #: the highest time seen (or reached by idleness; per partition over Redis:
        #: this one is the highest of them), and when it last moved
        self.watermark = Watermark(
            clock or LoopClock(),
            (
                self.size + self.grace
                if idle_after is None
                else _check(name, "idle_after", idle_after)
            ),
        )
        self.late_items = 0
        self.closed = 0
        self.evicted = 0
        self._warned = False
        self._out = self.outputs["out"]
        self._late = self.outputs.get("late")
        self._updated: Closed | None = self._emit if emit == "every" else None
        self._entries: list[Entry] = []
        #: the datetimes of recent window boundaries, by their seconds (``_moment``)
        self._moments: dict[float, datetime] = {}
        self._late_entries: list[Entry] = []
        #: items the core could not add, with why (reported by the input loop)
        self._failed: list[tuple[Entry, Exception]] = []
        # made in ``serve``: anyio's primitives belong to the running loop
        self._sending: anyio.Lock | None = None
        #: the timer's wait (closes and expiries by the clock)
        self.alarm = Alarm()
        #: the state kept by the input's transport (over Redis), else None
        self.kept: KeptWindows | None = None
        #: what an item is read back as from kept state (``collect`` of items)
        self.item_schema = _model(next(iter(self.inputs.values())).schema)

    def _store(
        self,
        name: str,
        type: WindowType,
        size: float | None,
        hop: float | None,
        count: int | None,
    ) -> Store:
        aggregate = self.aggregate
        if count is not None:
            if size is not None or hop is not None or type != "tumbling":
                raise WiringError(
                    f"window {name!r}: count windows are tumbling and take no "
                    "size or hop"
                )
            if count < 1:
                raise WiringError(f"window {name!r}: count must be at least 1")
            return CountWindows(count, aggregate, self._closed_one)
        if size is None:
            raise WiringError(f"window {name!r}: give size (seconds) or count")
        size = _check(name, "size", size)
        if type == "tumbling":
            if hop is not None:
                raise WiringError(f"window {name!r}: a tumbling window has no hop")
            return AlignedWindows(size, size, aggregate)
        if type == "hopping":
            if hop is None or not 0 < hop <= size:
                raise WiringError(
                    f"window {name!r}: a hopping window needs hop, more than 0 "
                    f"and at most size ({size:g}), got {hop!r}"
                )
            return AlignedWindows(size, hop, aggregate)
        if type == "sliding":
            if hop is not None:
                raise WiringError(f"window {name!r}: a sliding window has no hop")
            return SlidingWindows(size, aggregate)
        raise WiringError(
            f"window {name!r}: type {type!r} is not tumbling, hopping or sliding"
        )

    @property
    def clock(self) -> Clock:
        """What the timer and the watermark's idleness read (a test sets its own)."""
        return self.watermark.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self.watermark.clock = clock

    @property
    def idle_after(self) -> float:
        """How long the input is quiet before the watermark moves on by itself."""
        return self.watermark.idle_after

    @property
    def open_windows(self) -> int:
        """Windows open now (every key's)."""
        return self.store.open if self.kept is None else self.kept.open

    def watermark_lag(self) -> float:
        """How far the watermark is behind the clock's wall time, in seconds (0
        before the first item)."""
        return self.watermark.lag()

    async def setup(self) -> None:
        """Refuse an input the window cannot take: unkeyed, or over a transport
        that does not keep its state (over Redis: a keyed connection does)."""
        for port in self.inputs.values():
            self._check_input(port)

    def _check_input(self, port: InputPort) -> None:
        for connection in port.connections:
            if connection.settled is not None:
                self._keep_by(connection)
                continue
            if (connection.key if self.key is None else self.key) is None:
                raise WiringError(
                    f"window {self.name!r}: its input must be keyed (connect it "
                    "with key=...) or the window given a key"
                )

    def _keep_by(self, connection: Connection) -> None:
        """An input over Redis: its keyed connection keeps the state, per partition
        (or the input is refused, saying why)."""
        keep = getattr(connection, "keep_window", None)
        where = f"window {self.name!r}: its input comes over {connection.transport!r}"
        if keep is None or connection.key is None:
            raise WiringError(
                f"{where}, so it must be a keyed connection (key=...): a keyed "
                "Redis connection keeps the window's state per partition, in Redis; "
                "unkeyed, a key's items would be split between the replicas"
            )
        if self.key is not None:
            raise WiringError(
                f"{where}: its key is the keyed connection's (its partitions hold "
                "whole keys); give the window no key of its own"
            )
        if self.kept is not None:
            raise WiringError(f"{where}: over Redis a window takes one connection")
        self.kept = keep(self)

    async def serve(self, context: RunContext) -> None:
        """Take every input, close windows on time meanwhile; at the end, close all."""
        if self.kept is not None:
            await self._serve_kept(self.kept)
            return
        drains = [(p, c) for p in self.inputs.values() for c in p.connections]
        self.watermark.advanced_at = self.clock.now()
        self._sending, self.alarm = anyio.Lock(), Alarm()
        async with anyio.create_task_group() as timer:
            timer.start_soon(self._on_time)
            async with anyio.create_task_group() as group:
                for port, connection in drains:
                    group.start_soon(self._receive, port, connection)
            timer.cancel_scope.cancel()
        self._close_all()
        await self._flush()

    async def _receive(self, port: InputPort, connection: Connection) -> None:
        """The loop of one input: a batch at a time, then what it closed, sent."""
        key = self.key or connection.key
        assert key is not None

        async def handle(batch: list[Entry]) -> None:
            self._add_all(batch, key)
            while self._failed:
                entry, exc = self._failed.pop(0)
                await self.fail(port, entry[1], exc)
            await self._flush()

        await intake(port, connection, self.burst_limit, handle)

    async def _serve_kept(self, kept: KeptWindows) -> None:
        """``serve`` over Redis: the state is the partitions', in Redis, so a
        replica that stops closes nothing (the partitions' next owners go on)."""
        drains = [(p, c) for p in self.inputs.values() for c in p.connections]
        self.watermark.advanced_at = self.clock.now()
        self._sending, self.alarm = anyio.Lock(), Alarm()
        async with anyio.create_task_group() as timer:
            timer.start_soon(self.alarm.serve, self.clock, kept)
            async with anyio.create_task_group() as group:
                for port, connection in drains:
                    group.start_soon(self._receive_kept, port, connection, kept)
            timer.cancel_scope.cancel()

    async def _receive_kept(
        self, port: InputPort, connection: Connection, kept: KeptWindows
    ) -> None:
        """The loop of an input over Redis: each batch committed by ``kept``."""
        take, limit = connection.take, self.burst_limit
        age, counts = port.age, port.latency.counts
        async with connection.receiving() as receiver:
            while True:
                batch = take(limit)
                if not batch:
                    try:
                        batch = [await receiver.receive()]
                    except EndOfStream:
                        return
                    batch += take(limit - 1)
                age.observe_since(monotonic(), [stamp for stamp, _ in batch])
                counts[0] += len(batch)
                for entry, exc in await kept.take(batch):
                    await self.fail(port, entry[1], exc)
                if self.alarm.unarmed and kept.open:
                    self.alarm.wake()

    def rearm(self) -> None:
        """The kept state changed outside the input loop (a partition's state was
        loaded): the timer looks at its deadline again."""
        self.alarm.wake()

    def _add_all(self, batch: list[Entry], key: Callable[[Any], Any]) -> None:
        """The synchronous core: add a batch, closing what the watermark passes."""
        store, mark = self.store, self.watermark
        watermark = mark.value
        late: list[Entry] = []
        if not self.event_time:
            t = self.clock.wall()  # processing time: one reading per batch
            if t > watermark:
                watermark = t
                store.close(watermark, self._closed_one)
            watermark = self._add_each(batch, key, watermark, late, t)
        elif self._tumbling:
            watermark = self._add_tumbling(batch, key, watermark, late)
        else:
            watermark = self._add_each(batch, key, watermark, late, None)
        mark.see(watermark)
        if late:
            self.late_items += len(late)
            if self._late is not None:
                self._late_entries += late
        if self.alarm.unarmed and store.open:
            self.alarm.wake()

    def _add_each(
        self,
        batch: list[Entry],
        key: Callable[[Any], Any],
        watermark: float,
        late: list[Entry],
        now: float | None,
    ) -> float:
        """Any window shape: each item through the store's ``add``. Returns the
        watermark; appends the late entries to ``late``."""
        store, add, time = self.store, self.store.add, self.time
        updated, closed = self._updated, self._closed_one
        grace, max_open = self.grace, self.max_open
        t = 0.0 if now is None else now
        failed = self._failed
        for entry in batch:
            item = entry[1].item
            try:
                k = key(item)
                if now is None:
                    value = time(item)  # type: ignore[misc]
                    t = value.timestamp() if isinstance(value, datetime) else value
                    # The store's horizon moves at its own steps (``next_close``):
                    # no call per item when nothing can close.
                    if t > watermark:
                        watermark = t
                        if t - grace >= store.next_close:
                            store.close(t - grace, closed)
                if store.open >= max_open:
                    self._evict()
                if not add(k, t, item, updated):
                    late.append(entry)
            except Exception as exc:  # no key or time, or the aggregate raised
                failed.append((entry, exc))
        return watermark

    def _add_tumbling(
        self,
        batch: list[Entry],
        key: Callable[[Any], Any],
        watermark: float,
        late: list[Entry],
    ) -> float:
        """``_add_each`` for the common case, inlined: event-time tumbling windows
        sent when final. The items' keys and times are read in C loops (``map``);
        a batch in which nothing can close, be late or reach the cap is counted
        in bulk (the same result as item by item: nothing depends on the order)."""
        store = self.store
        assert isinstance(store, AlignedWindows)
        time, size, slots = self.time, store.size, store.slots
        assert time is not None
        items = list(map(_ITEM, map(_ENVELOPE, batch)))
        try:
            values = list(map(time, items))
            try:
                times = list(map(_TIMESTAMP, values))
            except TypeError:  # not all datetimes: seconds since the epoch
                times = [
                    v.timestamp() if isinstance(v, datetime) else float(v)
                    for v in values
                ]
            keys = list(map(key, items))
        except Exception:  # an item without a key or a time: find it, one by one
            return self._add_each(batch, key, watermark, late, None)
        top, low = max(times), min(times)
        grace = self.grace
        if (
            type(self.aggregate) is Count
            and low - low % size > store.horizon
            and (top <= watermark or top - grace < store.next_close)
            and store.open + len(batch) < self.max_open
        ):
            start = low - low % size
            if start == top - top % size:  # one window start (most batches)
                self._count_into(store, start, keys)
                return max(watermark, top)
            for (start, k), count in Counter(
                zip([t - t % size for t in times], keys, strict=True)
            ).items():
                slot = slots.get(start)
                if slot is None:
                    slot = slots[start] = _new_slot()
                    heapq.heappush(store.starts, start)
                acc = slot.get(k)
                if acc is None:
                    store.open += 1
                    slot[k] = count
                else:
                    slot[k] = acc + count
            return max(watermark, top)
        initial, add_to = store.initial, store.add_to
        counting = type(self.aggregate) is Count
        closed, max_open = self._closed_one, self.max_open
        current, slot = math.nan, None  # the slot of the last item's start
        for entry, item, t, k in zip(batch, items, times, keys, strict=True):
            if t > watermark:
                watermark = t
                if t - grace >= store.next_close:
                    store.close(t - grace, closed)
                    current = math.nan  # the slot may have closed
            start = t - t % size
            if start <= store.horizon:
                late.append(entry)
                continue
            if start != current:
                slot = slots.get(start)
                if slot is None:
                    slot = slots[start] = _new_slot()
                    heapq.heappush(store.starts, start)
                current = start
            assert slot is not None
            acc = slot.get(k, slot)
            fresh = acc is slot
            if fresh:
                if store.open >= max_open:
                    self._evict()
                    if start not in slots:  # the evicted window was its last
                        slot = slots[start] = _new_slot()
                        heapq.heappush(store.starts, start)
                acc = initial()
            try:
                slot[k] = acc + 1 if counting else add_to(acc, item)
            except Exception as exc:  # the user's aggregate raised
                self._failed.append((entry, exc))
                continue
            if fresh:
                store.open += 1
        return watermark

    def _count_into(self, store: AlignedWindows, start: float, keys: list[Any]) -> None:
        """Count ``keys`` into the windows of ``start``, in one C loop: the slot is
        a ``Counter`` (a dict to everything else), whose ``update`` adds one per
        key to what is there, a missing key starting at zero (``Count``'s initial)."""
        slots = store.slots
        slot = slots.get(start)
        if isinstance(slot, Counter):
            counter = slot
        else:  # a new start, or a slot made item by item (``_add_each``)
            if slot is None:
                heapq.heappush(store.starts, start)
            counter = slots[start] = Counter(slot or ())
        opened = len(counter)
        counter.update(keys)
        store.open += len(counter) - opened

    def _emit(self, key: Any, start: float, end: float, acc: Any) -> None:
        moments = self._moments
        first = moments.get(start)
        if first is None:
            first = self._moment(start)
        last = moments.get(end)
        if last is None:
            last = self._moment(end)
        # Validated as ``schema(key=..., ...)`` would, without the keyword call's
        # cost (``model_validate`` adds its own); a typed schema checks the value.
        result = self.schema.__pydantic_validator__.validate_python(
            {
                "key": key,
                "start": first,
                "end": last,
                "value": self.aggregate.result(acc),
            }
        )
        now = monotonic()
        # Envelope.start, inlined: this runs for every window.
        self._entries.append(
            (now, new_envelope(Envelope, (result, next_seq(), now, None, None)))
        )

    def _moment(self, seconds: float) -> datetime:
        """The aware datetime of a window boundary, kept for the other windows that
        share it (every key's window of one start); a few thousand at most."""
        moments = self._moments
        if len(moments) >= _MOMENTS:
            moments.clear()
        moment = moments[seconds] = datetime.fromtimestamp(seconds, UTC)
        return moment

    def _closed_one(self, key: Any, start: float, end: float, acc: Any) -> None:
        """A window closed: counted, and sent unless ``every`` sent it already."""
        self.closed += 1
        if self._updated is None:
            self._emit(key, start, end, acc)

    def _evict(self) -> None:
        """The cap is reached: close the oldest window early (one warning)."""
        self.evicted += 1
        if not self._warned:
            self._warned = True
            self.log.warning(
                "window %s: %d windows open, the cap (max_open); the oldest are "
                "closed early from now on (counted in portwright_window_evicted)",
                self.name,
                self.max_open,
            )
        self.store.evict(self._closed_one)

    def _close_all(self) -> None:
        """Drain: close every open window, oldest first, as it stands."""
        while self.store.open:
            self.store.evict(self._closed_one)

    async def _flush(self) -> None:
        """Send what was closed (and the late items); one sender at a time, so
        that the input loops and the timer keep each window's order."""
        if not self._entries and not self._late_entries:
            return  # most batches close nothing: no lock to take (a checkpoint)
        assert self._sending is not None
        async with self._sending:
            if self._entries and (pending := self._out.emit_all(self._entries)):
                await pending
            late = self._late
            if (
                late is not None
                and self._late_entries
                and (pending := late.emit_all(self._late_entries))
            ):
                await pending

    def _deadline(self) -> float:
        """When (``clock.now()``) the timer has something to do; inf: nothing."""
        if not self.store.open or isinstance(self.store, CountWindows):
            return math.inf  # count windows do not close on time
        if self.event_time:
            return self.watermark.idle_deadline()
        # Processing time: when the wall clock reaches the oldest window's close.
        clock = self.clock
        return clock.now() + max(0.0, self.store.closes_at() - clock.wall())

    async def _on_time(self) -> None:
        """Close windows by the clock: processing-time windows at their end, and
        event-time windows of an input quiet for ``idle_after``."""
        clock = self.clock
        while True:
            deadline = self._deadline()
            await self.alarm.wait(clock, deadline)
            if clock.now() < self._deadline():
                continue  # woken by a first window, or items moved the deadline on
            if self.event_time:
                # Idle: the watermark moves on by the time the input was quiet.
                self.store.close(self.watermark.idle() - self.grace, self._closed_one)
            else:
                # At least the close it waited for (the wall and monotonic
                # readings may round apart).
                self.watermark.value = max(clock.wall(), self.store.closes_at())
                self.store.close(self.watermark.value, self._closed_one)
            # Shielded: the drain cancels this task, and what emit_all had taken
            # from the list but not yet sent would be lost with it.
            with anyio.CancelScope(shield=True):
                await self._flush()


def _model(schema: Any) -> type[BaseModel] | None:
    """``schema`` when it is a pydantic model, else None."""
    return schema if isclass(schema) and issubclass(schema, BaseModel) else None


def _check(name: str, what: str, seconds: float, *, allow_zero: bool = False) -> float:
    """A duration in seconds: positive (or zero where allowed) and finite."""
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise WiringError(
            f"window {name!r}: {what} must be a positive number of seconds, "
            f"got {seconds!r}"
        )
    return float(seconds)
