"""The open windows of a ``Window`` component, by shape: what is open, and what closes.

Plain synchronous state, no I/O and no clock: ``add`` puts an item (its key and
time, in seconds) in its open windows, ``close`` closes what a watermark passed,
``evict`` closes the oldest window early; each hands a closed window to a
``Closed`` callback. ``windows.py`` wraps them in the component; docs/runtime.md
("Windows") states the rules.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right, insort
from collections.abc import Callable
from typing import Any

from .aggregates import Aggregate

__all__ = [
    "AlignedWindows",
    "Closed",
    "CountWindows",
    "Dropped",
    "Kept",
    "SlidingWindows",
    "Store",
]

#: ``closed(key, start, end, acc)``: a store hands on a window it closes or updates
Closed = Callable[[Any, float, float, Any], None]
#: ``kept(key, time, seq, item)``: a sliding store keeps an item (for windows to come)
Kept = Callable[[Any, float, int, Any], None]
#: ``dropped(key, items)``: a sliding store drops kept ``(time, seq, item)``s
Dropped = Callable[[Any, list[tuple[float, int, Any]]], None]


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
                slot = self.slots[start] = dict[Any, Any]()
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
        #: a heap of (time + size, seq, key) per kept item: when it is no use
        self.expiries: list[tuple[float, int, Any]] = []
        self.open = 0
        self.seq = 0
        #: windows ending before this are closed
        self.horizon = -math.inf
        #: the horizon is the watermark itself: ``close`` at every step
        self.next_close = -math.inf
        #: told of each item kept and dropped: the Redis store writes them (in
        #: memory, None: nothing to tell)
        self.kept: Kept | None = None
        self.dropped: Dropped | None = None

    def add(self, key: Any, t: float, item: Any, updated: Closed | None) -> bool:
        """Add ``item`` to its key's open windows, opening its own if not closed."""
        size, add_to, horizon = self.size, self.add_to, self.horizon
        windows = self.windows.get(key, {})
        taken = False
        for end, acc in windows.items():
            if end - size < t <= end:
                acc = windows[end] = add_to(acc, item)
                if updated is not None:
                    updated(key, end - size, end, acc)
                taken = True
        self.seq += 1
        recent = self._pruned(key, self.recent.get(key, []))
        if t >= horizon and t not in windows:
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
        if t > horizon - size:
            insort(recent, (t, self.seq, item))
            heapq.heappush(self.expiries, (t + size, self.seq, key))
            if self.kept is not None:
                self.kept(key, t, self.seq, item)
        self._keep(key, windows, recent)
        return taken

    def close(self, watermark: float, closed: Closed) -> None:
        """Close the windows whose end the watermark has passed, and drop the kept
        items no window can need any more (the work follows what closes and what
        expires, not the number of keys)."""
        self.horizon = horizon = max(self.horizon, watermark)
        ends = self.ends
        while ends and ends[0][0] < horizon:
            end, _, key = heapq.heappop(ends)
            self._close(key, end, closed)
        # A quiet key's last items too (no window of its closes any more).
        expiries = self.expiries
        while expiries and expiries[0][0] <= horizon:
            _, _, key = heapq.heappop(expiries)
            if key in self.recent:
                self._keep(
                    key,
                    self.windows.get(key, {}),
                    self._pruned(key, self.recent[key]),
                )

    def _close(self, key: Any, end: float, closed: Closed) -> None:
        windows = self.windows.get(key, {})
        acc = windows.pop(end, self)
        if acc is not self:
            self.open -= 1
            closed(key, end - self.size, end, acc)
        self._keep(key, windows, self._pruned(key, self.recent.get(key, [])))

    def _pruned(
        self, key: Any, recent: list[tuple[float, int, Any]]
    ) -> list[tuple[float, int, Any]]:
        """``recent`` without the items no open or future window can hold: those
        at or before ``horizon - size``."""
        cut = bisect_right(recent, (self.horizon - self.size, math.inf))
        if cut:
            if self.dropped is not None:
                self.dropped(key, recent[:cut])
            del recent[:cut]
        return recent

    def _keep(
        self, key: Any, windows: dict[float, Any], recent: list[tuple[float, int, Any]]
    ) -> None:
        """Keep the key's windows and items, or forget the key when it has none."""
        if windows or recent:
            self.windows[key], self.recent[key] = windows, recent
        else:
            self.windows.pop(key, None)
            self.recent.pop(key, None)

    def restore(
        self,
        windows: list[tuple[Any, float, Any]],
        items: list[tuple[Any, float, int, Any]],
    ) -> None:
        """Put back, into an empty store, open windows ``(key, end, acc)`` and kept
        items ``(key, time, seq, item)`` (as the Redis store loads them); ``seq``
        goes on after the items' highest. Among equal ends the heap orders
        windows by a number (negative here: never one of a window added later),
        never by their keys, which need not compare."""
        for n, (key, end, acc) in enumerate(windows):
            self.windows.setdefault(key, {})[end] = acc
            self.recent.setdefault(key, [])
            self.ends.append((end, -1 - n, key))
        for key, t, seq, item in items:
            self.recent.setdefault(key, []).append((t, seq, item))
            self.windows.setdefault(key, {})
            self.expiries.append((t + self.size, seq, key))
            self.seq = max(self.seq, seq)
        for recent in self.recent.values():
            recent.sort(key=lambda kept: (kept[0], kept[1]))
        heapq.heapify(self.ends)
        heapq.heapify(self.expiries)
        self.open += len(windows)

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
