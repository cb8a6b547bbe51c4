"""Event time and the watermark: how far a stateful component's time has come.

A leaf the stateful components share (``joins.py``, ``windows.py``; a window reads
its items' times in its own loops, for speed, and over Redis keeps a watermark per
partition too: ``redis/windowstore.py``). Time is in seconds (a float): an item's
event time read from a field holding an aware ``datetime`` (or a number of
seconds), or the clock's wall time (processing time).

The watermark is the highest time seen (in memory a keyed connection is one
partition, so it is per component). When no item has moved it for ``idle_after``
of the clock, ``idle`` moves it on by the time the input was quiet, so that state
waiting for time to pass is released on a quiet input too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from operator import attrgetter
from typing import Any

from .clock import Clock

__all__ = ["TimeReader", "Watermark", "seconds", "time_reader"]

#: an item's event time, in seconds since the Unix epoch
TimeReader = Callable[[Any], float]


def seconds(value: Any) -> float:
    """An event time in seconds: an aware ``datetime``'s timestamp, or a number."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            # A naive datetime is read in the machine's zone: refuse, not guess.
            raise ValueError(f"event time {value!r} has no time zone")
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"event time {value!r} is neither a datetime nor seconds")


def time_reader(time: str | Callable[[Any], Any]) -> TimeReader:
    """Reads an item's event time: a field (``a.b`` nested) or a function."""
    read = attrgetter(time) if isinstance(time, str) else time
    return lambda item: seconds(read(item))


class Watermark:
    """The highest time seen, moved on by idleness; ``-inf`` before any item."""

    def __init__(self, clock: Clock, idle_after: float) -> None:
        self.clock = clock
        self.idle_after = idle_after
        self.value = -math.inf
        #: ``clock.now()`` when the watermark last moved (the component sets it
        #: when it starts: a clock may need the running loop to be read)
        self.advanced_at = 0.0

    def see(self, t: float) -> bool:
        """Take an item's time into account; whether the watermark moved."""
        if t > self.value:
            self.value = t
            self.advanced_at = self.clock.now()
            return True
        return False

    def idle_deadline(self) -> float:
        """When (``clock.now()``) the input counts as quiet."""
        return self.advanced_at + self.idle_after

    def idle(self) -> float:
        """The input was quiet: move on by the time it was; the new watermark."""
        now = self.clock.now()
        if self.value != -math.inf:
            self.value += now - self.advanced_at
        self.advanced_at = now
        return self.value

    def lag(self) -> float:
        """How far the watermark is behind the clock's wall time, in seconds (0
        before the first item)."""
        if self.value == -math.inf:
            return 0.0
        return max(0.0, self.clock.wall() - self.value)
