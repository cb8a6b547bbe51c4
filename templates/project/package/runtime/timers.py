"""When a timer ticks: every so often, or on a cron schedule; late ticks are skipped.

A leaf. ``Ticker`` says when the next tick is due and counts the ticks that came
due while the previous one was still running (or its items were still waiting for
room downstream): those are skipped, never run late one after another, so a slow
tick cannot make ticks pile up.
"""

from __future__ import annotations

import math

from .clock import Clock
from .cron import Cron

__all__ = ["Ticker"]


class Ticker:
    """The due times of a timer: ``every`` seconds from the start, or ``schedule``.

    With ``every``, the first tick is due at once and the next ones at the start
    plus whole periods; with ``schedule``, at the start of each matching minute
    (UTC). A tick due while the one before is still running is skipped (counted
    in ``skipped``): the next tick is the first one due from the moment the
    previous one ended.
    """

    def __init__(
        self, clock: Clock, *, every: float | None = None, schedule: str | None = None
    ) -> None:
        if (every is None) == (schedule is None):
            raise ValueError("a timer takes either every or schedule, not both")
        if every is not None and not every > 0:
            raise ValueError(f"every must be positive, got {every!r}")
        self.clock = clock
        self.every = every
        self.cron = Cron.parse(schedule) if schedule is not None else None
        #: ticks run, and ticks skipped because the one before ran late
        self.ticks = 0
        self.skipped = 0
        self._start = 0.0
        self._period = 0  # with every: the number of the period due next
        self._due_wall = 0.0  # with schedule: the Unix time due next

    def first(self) -> float:
        """The time (``clock.now()``) the first tick is due; the cadence starts now."""
        now = self._start = self.clock.now()
        self._period = 0
        if self.cron is None:
            return now
        return self._on_schedule(now)

    def next(self) -> float:
        """After a tick: when the next one is due, counting those it ran past."""
        self.ticks += 1
        now = self.clock.now()
        if self.every is not None:
            # The tiny allowance keeps a boundary reached exactly from being
            # counted as passed when the division rounds up.
            reached = math.ceil((now - self._start) / self.every - 1e-9)
            period = max(self._period + 1, reached)
            self.skipped += period - self._period - 1
            self._period = period
            return self._start + period * self.every
        assert self.cron is not None
        previous = self._due_wall
        due = self._on_schedule(now, after=previous)
        moment = self.cron.next_after(previous)
        while moment < self._due_wall:
            self.skipped += 1
            moment = self.cron.next_after(moment)
        return due

    def _on_schedule(self, now: float, after: float = 0.0) -> float:
        """The first matching minute from ``now`` on (and past the minute ``after``,
        the tick just run), as a ``clock.now()`` time."""
        assert self.cron is not None
        wall = self.clock.wall()
        # next_after looks past its argument's minute; from just before now, a
        # match that starts exactly now counts.
        self._due_wall = self.cron.next_after(max(wall - 1e-6, after))
        return now + (self._due_wall - wall)
