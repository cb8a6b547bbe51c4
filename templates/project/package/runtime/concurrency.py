"""Several items in a user method at once: the in-flight window.

A component with ``concurrency`` above 1, or ``blocking`` user code, does not take
the one-at-a-time loops of ``component``: its receiving loop admits up to
``concurrency`` messages into the window, each handled in a task of its own (an
``async def`` method awaited there; a ``blocking`` one run in a worker thread, under a
``CapacityLimiter`` of ``concurrency``), and one releasing task hands results on:

- ``ordering="input"``: in the order the messages came, a finished message waiting
  for those before it;
- ``ordering="none"``: as each one finishes.

A message keeps its place in the window until it is released: handed on (its result
sent) and then settled (``Connection.settled``: on Redis, acknowledged once what it
sent is written). So at most ``concurrency`` messages are taken and not settled, the
backpressure of the buffers before and after still holds, and nothing is settled
before its own work is done, whatever the order results leave in.

On a keyed connection (``key``) the items of one key are never in the user method
together: a message whose key is already inside waits, holding its place in the
window, until the one before it of that key has finished, and then starts; other
keys go on meanwhile. So each key's items finish, and leave under either ordering,
in the order they came.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import monotonic
from typing import Any, Literal, get_args

import anyio
import anyio.abc
from anyio import EndOfStream, WouldBlock
from anyio.streams.memory import MemoryObjectReceiveStream

from .context import set_message
from .envelope import Entry, Envelope
from .errors import WiringError
from .ports import InputPort

__all__ = ["MAX_CONCURRENCY", "Ordering", "Release", "Window", "Work"]

Ordering = Literal["input", "none"]
ORDERINGS: tuple[str, ...] = get_args(Ordering)
#: the most items one component may hold in its user method at once
MAX_CONCURRENCY = 1024
#: ``release(envelope, result, error)``: hand one finished message on and settle it
Release = Callable[[Envelope, Any, Exception | None], Awaitable[None]]


@dataclass(frozen=True)
class Work:
    """How a component runs its user method (the blueprint's keys of that name)."""

    concurrency: int = 1
    ordering: Ordering = "input"
    blocking: bool = False

    def check(self, component: str) -> None:
        """Raise ``WiringError`` for a setting the window cannot run."""
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise WiringError(
                f"component {component!r}: concurrency must be from 1 to "
                f"{MAX_CONCURRENCY}, got {self.concurrency!r}"
            )
        if self.ordering not in ORDERINGS:
            raise WiringError(
                f"component {component!r}: ordering {self.ordering!r} is not one of "
                f"{', '.join(ORDERINGS)}"
            )

    @property
    def windowed(self) -> bool:
        """Whether the component needs the window (else: the one-at-a-time loops)."""
        return self.concurrency > 1 or self.blocking


class _Slot:
    """One message in the window, and what became of it once finished."""

    __slots__ = ("done", "envelope", "error", "key", "result")

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.key: object = None
        self.done = False
        self.result: Any = None
        self.error: Exception | None = None


class Window:
    """Up to ``work.concurrency`` messages of one input in the user method at once."""

    def __init__(
        self,
        work: Work,
        call: Callable[[Any], Any] | None,
        *,
        is_async: bool,
        port: InputPort,
        key: Callable[[Any], object] | None = None,
    ) -> None:
        self.work = work
        self.port = port
        self._key = key
        # each key inside the method, with its messages that wait for it, in order
        self._waiting: dict[object, deque[_Slot]] = {}
        self._group: anyio.abc.TaskGroup | None = None
        self._call = call
        self._is_async = is_async
        self._limiter = anyio.CapacityLimiter(work.concurrency)
        self._ordered = work.ordering == "input"
        # In input order (ordered), or in the order they finished (not ordered).
        self._queue: deque[_Slot] = deque()
        self._wake = anyio.Event()
        self._receiving = True
        #: messages taken and not yet released (read by tests and the drain report)
        self.in_flight = 0

    async def run(
        self, receiver: MemoryObjectReceiveStream[Entry], release: Release
    ) -> None:
        """Take messages until the stream ends, and release every one of them."""
        free = anyio.Semaphore(self.work.concurrency)
        age, clock = self.port.age, monotonic
        key, waiting = self._key, self._waiting
        async with anyio.create_task_group() as group:
            self._group = group
            group.start_soon(self._releasing, release, free)
            try:
                while True:
                    await free.acquire()
                    try:
                        enqueued, envelope = receiver.receive_nowait()
                    except WouldBlock:
                        try:
                            enqueued, envelope = await receiver.receive()
                        except EndOfStream:
                            break
                    except EndOfStream:
                        break
                    age.observe(clock() - enqueued)
                    slot = _Slot(envelope)
                    self.in_flight += 1
                    if self._ordered:
                        self._queue.append(slot)
                    if key is not None:
                        slot.key = key(envelope.item)
                        behind = waiting.get(slot.key)
                        if behind is not None:  # its key is inside: wait for it
                            behind.append(slot)
                            continue
                        waiting[slot.key] = deque()
                    group.start_soon(self._handle, slot)
            finally:
                self._receiving = False
                self._wake.set()

    async def _handle(self, slot: _Slot) -> None:
        """Run the user method on one message (in this task, or a worker thread)."""
        call, envelope = self._call, slot.envelope
        set_message(envelope)  # this task's context (and a worker thread's copy)
        started = monotonic()
        try:
            if call is None:
                slot.result = envelope.item
            elif self.work.blocking:
                slot.result = await anyio.to_thread.run_sync(
                    call, envelope.item, limiter=self._limiter
                )
            elif self._is_async:
                slot.result = await call(envelope.item)
            else:
                slot.result = call(envelope.item)
        except Exception as exc:
            slot.error = exc
        latency = self.port.latency
        took = monotonic() - started
        latency.counts[bisect_left(latency.bounds, took)] += 1
        latency.sum += took
        slot.done = True
        if not self._ordered:
            self._queue.append(slot)
        if self._key is not None:
            self._next_of_key(slot.key)
        self._wake.set()

    def _next_of_key(self, key: object) -> None:
        """Start the next message of ``key``, or mark the key free."""
        behind = self._waiting[key]
        if behind:
            assert self._group is not None  # set before any message starts
            self._group.start_soon(self._handle, behind.popleft())
        else:
            del self._waiting[key]

    async def _releasing(self, release: Release, free: anyio.Semaphore) -> None:
        """Hand finished messages on, one at a time, in the window's order."""
        queue = self._queue
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while queue and queue[0].done:
                slot = queue.popleft()
                await release(slot.envelope, slot.result, slot.error)
                self.in_flight -= 1
                free.release()
            if not self._receiving and self.in_flight == 0:
                return
