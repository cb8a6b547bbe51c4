"""Windows: per key, the items of a span of time (or of N items), folded into a value.

The ``Window`` component takes one keyed input and emits, per key and window, an
item with ``key``, ``start``, ``end`` and ``value`` (the aggregate's result). How
windows are laid out and closed lives in the ``*Windows`` stores below: plain
synchronous code, so that the component's loop is a thin async shell around it.
See docs/runtime.md ("Windows") for the rules, stated once.

Time is in seconds (a float): the item's event time (``time``: a field holding an
aware ``datetime``) or the processing time (the injected clock's ``wall()``). The
watermark is the highest time seen on the component's input: in memory a keyed
connection is one partition, so it is per component. A window closes once the
watermark reaches its end plus ``grace``; when no item has advanced the watermark
for ``idle_after`` of the clock (default ``size + grace``), the watermark moves on
by that much, so that a quiet input still gets its results.
"""

from __future__ import annotations

import heapq
import math
from bisect import insort
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from operator import attrgetter
from time import monotonic
from typing import Any, Literal

import anyio
from anyio import EndOfStream, WouldBlock
from anyio.lowlevel import checkpoint
from pydantic import BaseModel, ConfigDict

from .aggregates import Aggregate, Count
from .clock import Clock, LoopClock
from .component import Component, RunContext
from .envelope import Entry, Envelope
from .errors import WiringError
from .ports import Connection, InputPort

__all__ = ["Window", "WindowResult", "WindowType"]

WindowType = Literal["tumbling", "hopping", "sliding"]
Emit = Literal["final", "every"]
#: ``closed(key, start, end, acc)``: a store hands on a window it closes or updates
Closed = Callable[[Any, float, float, Any], None]


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


class AlignedWindows:
    """Tumbling (``hop == size``) and hopping windows: ``[start, start + size)``,
    starts on multiples of ``hop`` since the Unix epoch, the same for every key.

    Windows are kept by start, then by key, so that closing the oldest windows
    of every key is one pop per start.
    """

    def __init__(self, size: float, hop: float, aggregate: Aggregate) -> None:
        self.size, self.hop = size, hop
        self.initial, self.add_to = aggregate.initial, aggregate.add
        self.slots: dict[float, dict[Any, Any]] = {}
        self.starts: list[float] = []  # a heap of the slots' starts
        self.open = 0
        #: windows starting at or before this are closed (nothing is added to them)
        self.horizon = -math.inf
        #: the watermark at which the horizon next passes a start (``close`` is
        #: needed no earlier: starts are multiples of ``hop``)
        self.next_close = -math.inf

    def add(self, key: Any, t: float, item: Any, updated: Closed | None) -> bool:
        """Add ``item`` (time ``t``) to its open windows; False if none is open."""
        hop, horizon = self.hop, self.horizon
        start = t - t % hop
        if start <= horizon:
            return False
        lowest = t - self.size
        taken = False
        while start > lowest and start > horizon:
            slot = self.slots.get(start)
            if slot is None:
                slot = self.slots[start] = {}
                heapq.heappush(self.starts, start)
            acc = slot.get(key, slot)
            if acc is slot:
                acc = self.initial()
                self.open += 1
            acc = slot[key] = self.add_to(acc, item)
            if updated is not None:
                updated(key, start, start + self.size, acc)
            taken = True
            start -= hop
        return taken

    def close(self, watermark: float, closed: Closed) -> None:
        """Close the windows whose end the watermark has reached."""
        size, hop = self.size, self.hop
        self.horizon = horizon = max(self.horizon, watermark - size)
        self.next_close = horizon - horizon % hop + hop + size
        starts = self.starts
        while starts and starts[0] <= horizon:
            start = heapq.heappop(starts)
            slot = self.slots.pop(start)
            self.open -= len(slot)
            for key, acc in slot.items():
                closed(key, start, start + size, acc)

    def closes_at(self) -> float:
        """The watermark at which the oldest open window closes."""
        return self.starts[0] + self.size if self.starts else math.inf

    def evict(self, closed: Closed) -> None:
        """Close the oldest window now (the first key of the oldest start)."""
        start = self.starts[0]
        slot = self.slots[start]
        key = next(iter(slot))
        self.open -= 1
        closed(key, start, start + self.size, slot.pop(key))
        if not slot:
            heapq.heappop(self.starts)
            del self.slots[start]


class SlidingWindows:
    """One window per key and distinct item time ``t``: ``(t - size, t]``.

    Each window holds every item of its key within ``size`` before it, so a new
    window is seeded from the items kept since ``horizon - size``.
    """

    def __init__(self, size: float, aggregate: Aggregate) -> None:
        self.size = size
        self.initial, self.add_to = aggregate.initial, aggregate.add
        self.windows: dict[Any, dict[float, Any]] = {}
        self.recent: dict[Any, list[tuple[float, int, Any]]] = {}
        self.ends: list[tuple[float, int, Any]] = []  # a heap of (end, seq, key)
        self.open = 0
        self.seq = 0
        #: windows ending before this are closed
        self.horizon = -math.inf
        #: the horizon is the watermark itself: ``close`` at every step
        self.next_close = -math.inf

    def add(self, key: Any, t: float, item: Any, updated: Closed | None) -> bool:
        """Add ``item`` to its key's open windows, opening its own if not closed."""
        size, add_to = self.size, self.add_to
        windows = self.windows.setdefault(key, {})
        taken = False
        for end, acc in windows.items():
            if end - size < t <= end:
                acc = windows[end] = add_to(acc, item)
                if updated is not None:
                    updated(key, end - size, end, acc)
                taken = True
        self.seq += 1
        recent = self.recent.setdefault(key, [])
        if t >= self.horizon and t not in windows:
            acc = self.initial()
            for when, _, earlier in recent:
                if t - size < when <= t:
                    acc = add_to(acc, earlier)
            acc = windows[t] = add_to(acc, item)
            heapq.heappush(self.ends, (t, self.seq, key))
            self.open += 1
            if updated is not None:
                updated(key, t - size, t, acc)
            taken = True
        if t > self.horizon - size:
            insort(recent, (t, self.seq, item))
        return taken

    def close(self, watermark: float, closed: Closed) -> None:
        """Close the windows whose end the watermark has passed."""
        self.horizon = horizon = max(self.horizon, watermark)
        ends, size = self.ends, self.size
        while ends and ends[0][0] < horizon:
            end, _, key = heapq.heappop(ends)
            self._close(key, end, closed)
        for key, recent in list(self.recent.items()):
            stale = sum(1 for when, _, _ in recent if when <= horizon - size)
            del recent[:stale]
            if not recent and not self.windows.get(key):
                del self.recent[key]
                self.windows.pop(key, None)

    def _close(self, key: Any, end: float, closed: Closed) -> None:
        acc = self.windows[key].pop(end, self)
        if acc is not self:
            self.open -= 1
            closed(key, end - self.size, end, acc)

    def closes_at(self) -> float:
        """The watermark at which the oldest open window closes (just past its
        end: the end itself is in the window)."""
        return math.nextafter(self.ends[0][0], math.inf) if self.ends else math.inf

    def evict(self, closed: Closed) -> None:
        """Close the oldest window now."""
        end, _, key = heapq.heappop(self.ends)
        self._close(key, end, closed)


class CountWindows:
    """Per key, every ``count`` items (in arrival order) make a window; its start
    and end are the first and the last item's times."""

    def __init__(self, count: int, aggregate: Aggregate, closed: Closed) -> None:
        self.count, self.closed = count, closed
        self.initial, self.add_to = aggregate.initial, aggregate.add
        #: key -> [acc, items so far, first time, last time]
        self.windows: dict[Any, list[Any]] = {}
        self.open = 0
        self.next_close = math.inf  # time closes nothing

    def add(self, key: Any, t: float, item: Any, updated: Closed | None) -> bool:
        """Add ``item``; the window closes (``closed``) on its ``count``-th."""
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = [self.initial(), 0, t, t]
            self.open += 1
        window[0] = self.add_to(window[0], item)
        window[1] += 1
        window[3] = t
        if updated is not None:
            updated(key, window[2], t, window[0])
        if window[1] >= self.count:
            self._close(key, self.closed)
        return True

    def close(self, watermark: float, closed: Closed) -> None:
        """Count windows do not close on time (only when full, or at drain)."""

    def closes_at(self) -> float:
        """Never on time."""
        return math.inf

    def evict(self, closed: Closed) -> None:
        """Close the oldest window now (the key that opened one first)."""
        self._close(next(iter(self.windows)), closed)

    def _close(self, key: Any, closed: Closed) -> None:
        acc, _, first, last = self.windows.pop(key)
        self.open -= 1
        closed(key, first, last, acc)


Store = AlignedWindows | SlidingWindows | CountWindows


class Window(Component):
    """One keyed input; per key and window, the ``aggregate`` of the items.

    Windows are ``tumbling`` (``size``), ``hopping`` (``size`` every ``hop``) or
    ``sliding`` (``size`` before each item), in seconds; or ``count`` items per
    key. Their time is the item's ``time`` field (an aware ``datetime``: event
    time) or, without one, the clock's (processing time). ``emit`` ``final`` sends
    each window once, when it closes; ``every`` sends its value at each update
    (and nothing more when it closes). An item whose windows have all closed is
    late: counted, and sent on the ``late`` output when there is one. At most
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
        max_open: int = 100_000,
        idle_after: float | None = None,
        clock: Clock | None = None,
        inputs: Mapping[str, Any] | None = None,
        burst_limit: int = 256,
    ) -> None:
        outputs: dict[str, Any] = {"out": schema}
        if late:
            outputs["late"] = Any
        super().__init__(name, inputs=inputs, outputs=outputs, burst_limit=burst_limit)
        if len(self.inputs) != 1:
            raise WiringError(f"window {name!r} needs exactly one input port")
        self.aggregate = aggregate or Count()
        if emit not in ("final", "every"):
            raise WiringError(f"window {name!r}: emit {emit!r} is not final or every")
        self.schema = schema
        self.grace = _check(name, "grace", grace, allow_zero=True)
        self.event_time = time is not None
        if not self.event_time and grace:
            raise WiringError(
                f"window {name!r}: grace is for event time (set time), not "
                "processing time, whose items are never out of order"
            )
        self.time = attrgetter(time) if isinstance(time, str) else time
        self.key = attrgetter(key) if isinstance(key, str) else key
        if max_open < 1:
            raise WiringError(f"window {name!r}: max_open must be at least 1")
        self.max_open = max_open
        self.clock: Clock = clock or LoopClock()
        self.store = self._store(name, type, size, hop, count)
        self.size = 0.0 if size is None else size
        self.idle_after = (
            self.size + self.grace
            if idle_after is None
            else _check(name, "idle_after", idle_after)
        )
        if count is not None and idle_after is not None:
            raise WiringError(f"window {name!r}: count windows do not close on time")
        #: the highest time seen (or reached by idleness); -inf before any item
        self.watermark = -math.inf
        #: ``clock.now()`` when the watermark last moved
        self.advanced_at = 0.0
        self.late_items = 0
        self.closed = 0
        self.evicted = 0
        self._warned = False
        self._out = self.outputs["out"]
        self._late = self.outputs.get("late")
        self._updated: Closed | None = self._emit if emit == "every" else None
        self._entries: list[Entry] = []
        self._late_entries: list[Entry] = []
        # made in ``serve``: anyio's primitives belong to the running loop
        self._sending: anyio.Lock | None = None
        self._wake: anyio.Event | None = None
        #: whether the timer waits for the first window (nothing to time yet)
        self._unarmed = True

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
    def open_windows(self) -> int:
        """Windows open now (every key's)."""
        return self.store.open

    def watermark_lag(self) -> float:
        """How far the watermark is behind the clock's wall time, in seconds (0
        before the first item)."""
        if self.watermark == -math.inf:
            return 0.0
        return max(0.0, self.clock.wall() - self.watermark)

    async def setup(self) -> None:
        """Refuse an input the window cannot take: unkeyed, or not in memory."""
        for port in self.inputs.values():
            self._check_input(port)

    def _check_input(self, port: InputPort) -> None:
        for connection in port.connections:
            if connection.settled is not None:
                raise WiringError(
                    f"window {self.name!r}: its state is kept in memory, so its "
                    f"input cannot come over {connection.transport!r} (yet)"
                )
            if (connection.key if self.key is None else self.key) is None:
                raise WiringError(
                    f"window {self.name!r}: its input must be keyed (connect it "
                    "with key=...) or the window given a key"
                )

    async def serve(self, context: RunContext) -> None:
        """Take every input, close windows on time meanwhile; at the end, close all."""
        drains = [(p, c) for p in self.inputs.values() for c in p.connections]
        self.advanced_at = self.clock.now()
        self._sending, self._wake = anyio.Lock(), anyio.Event()
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
        take, limit, clock = connection.take, self.burst_limit, monotonic
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
                age.observe_since(clock(), [stamp for stamp, _ in batch])
                counts[0] += len(batch)  # no user method to time (see metrics)
                self._add_all(batch, key)
                await self._flush()
                await checkpoint()

    def _add_all(self, batch: list[Entry], key: Callable[[Any], Any]) -> None:
        """The synchronous core: add a batch, closing what the watermark passes."""
        store, add, time = self.store, self.store.add, self.time
        updated, closed = self._updated, self._closed_one
        grace, max_open = self.grace, self.max_open
        watermark = self.watermark
        t = self.clock.wall()  # processing time: one reading per batch
        if not self.event_time and t > watermark:
            watermark = t
            store.close(watermark, closed)
        late: list[Entry] = []
        for entry in batch:
            item = entry[1].item
            if time is not None:
                value = time(item)
                t = value.timestamp() if isinstance(value, datetime) else value
                # The store's horizon moves at its own steps (``next_close``): no
                # call per item when nothing can close.
                if t > watermark:
                    watermark = t
                    if t - grace >= store.next_close:
                        store.close(t - grace, closed)
            if store.open >= max_open:
                self._evict()
            if not add(key(item), t, item, updated):
                late.append(entry)
        if watermark > self.watermark:
            self.watermark = watermark
            self.advanced_at = self.clock.now()
        if late:
            self.late_items += len(late)
            if self._late is not None:
                self._late_entries += late
        if self._unarmed and store.open and self._wake is not None:
            self._wake.set()

    def _emit(self, key: Any, start: float, end: float, acc: Any) -> None:
        result = self.schema(
            key=key,
            start=datetime.fromtimestamp(start, UTC),
            end=datetime.fromtimestamp(end, UTC),
            value=self.aggregate.result(acc),
        )
        now = monotonic()
        self._entries.append((now, Envelope.start(result, now)))

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
        if not self.store.open:
            return math.inf
        if self.event_time:
            return self.advanced_at + self.idle_after
        # Processing time: when the wall clock reaches the oldest window's close.
        clock = self.clock
        return clock.now() + max(0.0, self.store.closes_at() - clock.wall())

    async def _on_time(self) -> None:
        """Close windows by the clock: processing-time windows at their end, and
        event-time windows of an input quiet for ``idle_after``."""
        clock = self.clock
        while True:
            deadline = self._deadline()
            self._unarmed = deadline == math.inf
            self._wake = wake = anyio.Event()
            with clock.scope(deadline):
                await wake.wait()
            if clock.now() < self._deadline():
                continue  # woken by a first window, or items moved the deadline on
            if self.event_time:
                # Idle: the watermark moves on by the time the input was quiet.
                now = clock.now()
                self.watermark += now - self.advanced_at
                self.advanced_at = now
                self.store.close(self.watermark - self.grace, self._closed_one)
            else:
                # At least the close it waited for (the wall and monotonic
                # readings may round apart).
                self.watermark = max(clock.wall(), self.store.closes_at())
                self.store.close(self.watermark, self._closed_one)
            await self._flush()


def _check(name: str, what: str, seconds: float, *, allow_zero: bool = False) -> float:
    """A duration in seconds: positive (or zero where allowed) and finite."""
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise WiringError(
            f"window {name!r}: {what} must be a positive number of seconds, "
            f"got {seconds!r}"
        )
    return float(seconds)
