"""The clock that batches and timers wait on: the event loop's, or one a test moves.

A leaf. Batch waits and timer ticks read time and wait through a ``Clock`` so that
tests (portwright's and the emitted ones) drive them with ``ManualClock`` and
assert exact cadences, never wall-clock durations on a shared machine.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

import anyio
from anyio.lowlevel import checkpoint

__all__ = ["Alarm", "Clock", "Due", "LoopClock", "ManualClock"]


class Clock(Protocol):
    """Time as the runtime's waits see it (seconds)."""

    def now(self) -> float:
        """A monotonic reading."""

    def wall(self) -> float:
        """The Unix time (for calendar schedules)."""

    def scope(self, deadline: float) -> anyio.CancelScope:
        """A cancel scope that is cancelled once ``now()`` reaches ``deadline``."""

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now()`` has reached ``deadline``."""


class LoopClock:
    """The event loop's clock: what a running service uses."""

    def now(self) -> float:
        """``anyio.current_time()``."""
        return anyio.current_time()

    def wall(self) -> float:
        """``time.time()``."""
        return time.time()

    def scope(self, deadline: float) -> anyio.CancelScope:
        """``anyio.CancelScope(deadline=deadline)``."""
        return anyio.CancelScope(deadline=deadline)

    async def sleep_until(self, deadline: float) -> None:
        """``anyio.sleep_until(deadline)``."""
        await anyio.sleep_until(deadline)


class ManualClock:
    """A clock that moves only when a test calls ``advance``.

    Waits whose deadline the clock passes end (scopes are cancelled, sleepers
    woken) during ``advance``; ``await anyio.sleep(0)`` or a few checkpoints then
    let the woken tasks run.
    """

    def __init__(self, start: float = 0.0, wall: float = 1_700_000_000.0) -> None:
        self.time = start
        self._wall_offset = wall - start
        self._scopes: list[tuple[float, anyio.CancelScope]] = []
        self._sleepers: list[tuple[float, anyio.Event]] = []

    def now(self) -> float:
        """The time the test last moved the clock to."""
        return self.time

    def wall(self) -> float:
        """The Unix time: ``wall`` given at creation, moved along with ``now``."""
        return self.time + self._wall_offset

    @property
    def waiting(self) -> int:
        """How many waits (scopes and sleepers) have not reached their deadline."""
        return len(self._scopes) + len(self._sleepers)

    def scope(self, deadline: float) -> anyio.CancelScope:
        """A scope cancelled by the ``advance`` that reaches ``deadline``."""
        scope = anyio.CancelScope()
        if deadline <= self.time:
            scope.cancel()
        else:
            self._scopes.append((deadline, scope))
        return scope

    async def sleep_until(self, deadline: float) -> None:
        """Wait until an ``advance`` reaches ``deadline``."""
        if deadline <= self.time:
            await checkpoint()
            return
        event = anyio.Event()
        self._sleepers.append((deadline, event))
        try:
            await event.wait()
        finally:
            self._sleepers = [(d, e) for d, e in self._sleepers if e is not event]

    def advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds`` and end the waits it passes."""
        self.advance_to(self.time + seconds)

    def advance_to(self, moment: float) -> None:
        """Move the clock on to exactly ``moment`` and end the waits it passes (a
        deadline computed as ``start + n * period`` is reached without rounding)."""
        if moment < self.time:
            raise ValueError(f"a clock does not go back: {moment} < {self.time}")
        self.time = moment
        due = [scope for deadline, scope in self._scopes if deadline <= self.time]
        self._scopes = [(d, s) for d, s in self._scopes if d > self.time]
        for scope in due:
            scope.cancel()
        for deadline, event in self._sleepers:
            if deadline <= self.time:
                event.set()


class Due(Protocol):
    """State kept elsewhere (a transport's store) that falls due at a deadline."""

    def deadline(self) -> float:
        """When something falls due, on the clock's ``now()`` (inf: nothing)."""

    async def on_time(self) -> None:
        """Do what is due now."""


class Alarm:
    """A component timer's wait for a deadline that may come nearer.

    The timer waits with ``wait``; ``wake`` ends the wait early, and the timer
    computes its deadline again: a first window or held item while nothing was
    due (``unarmed``), or state loaded from elsewhere. Windows and joins time
    their closes and expiries with one.
    """

    def __init__(self) -> None:
        #: the last wait had no deadline: nothing to time yet
        self.unarmed = True
        self._event: anyio.Event | None = None

    def wake(self) -> None:
        """End the current wait (the deadline may have moved)."""
        if self._event is not None:
            self._event.set()

    async def wait(self, clock: Clock, deadline: float) -> None:
        """Until ``deadline`` on ``clock``, or an earlier ``wake``."""
        self.unarmed = deadline == math.inf
        self._event = event = anyio.Event()
        with clock.scope(deadline):
            await event.wait()

    async def serve(self, clock: Clock, due: Due) -> None:
        """Forever: wait for ``due``'s deadline, then do what is due (shielded:
        a stop does not cut a commit in half)."""
        while True:
            await self.wait(clock, due.deadline())
            if clock.now() >= due.deadline():
                with anyio.CancelScope(shield=True):
                    await due.on_time()
