"""Batches a user method takes at once: up to ``max_items``, or fewer after a wait.

A leaf. ``Batching`` collects messages from an input's receiver until it holds
``max_items`` or ``max_wait`` has passed since the first one arrived (what is
already buffered is taken without waiting), and keeps the batch metrics: sizes
and the time the user method took per batch. The component loop calls it; the
wait goes through a ``Clock`` so that tests move time by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from anyio import EndOfStream, WouldBlock

from .clock import Clock, LoopClock
from .histogram import LATENCY_BUCKETS, Histogram

__all__ = ["SIZE_BUCKETS", "Batch", "Batching", "Receiver"]

#: Upper bounds of the batch-size histogram (items per batch).
SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class Receiver(Protocol):
    """The end of a stream a batch is taken from (an anyio receive stream)."""

    def receive_nowait(self) -> Any:
        """The next entry, or ``WouldBlock``; ``EndOfStream`` once closed."""

    async def receive(self) -> Any:
        """The next entry, waiting for it; ``EndOfStream`` once closed."""


@dataclass(frozen=True)
class Batch:
    """What a blueprint's ``batch:`` says: at most ``max_items``, waiting at most
    ``max_wait_s`` after the first item for the rest."""

    max_items: int
    max_wait_s: float = 0.0

    def __post_init__(self) -> None:
        if self.max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {self.max_items!r}")
        if self.max_wait_s < 0:
            raise ValueError(f"max_wait_s may not be negative, got {self.max_wait_s!r}")


class Batching:
    """Collects batches for one component and keeps its batch metrics."""

    def __init__(self, batch: Batch, clock: Clock | None = None) -> None:
        self.batch = batch
        #: what batch waits are timed by (tests swap in a ``ManualClock``)
        self.clock: Clock = clock or LoopClock()
        #: items per batch, and seconds the user method took per batch
        self.sizes = Histogram(SIZE_BUCKETS)
        self.latency = Histogram(LATENCY_BUCKETS)

    async def collect(self, receiver: Receiver) -> list[Any]:
        """The next batch from ``receiver``: empty once it is closed and drained.

        Waits for a first entry, takes what is buffered, then waits for more
        until the batch is full or ``max_wait_s`` has passed since the first.
        """
        limit = self.batch.max_items
        try:
            batch = [receiver.receive_nowait()]
        except WouldBlock:
            try:
                batch = [await receiver.receive()]
            except EndOfStream:
                return []
        except EndOfStream:
            return []
        if _fill(receiver, batch, limit) or self.batch.max_wait_s <= 0:
            return batch
        clock = self.clock
        with clock.scope(clock.now() + self.batch.max_wait_s):
            while len(batch) < limit:
                try:
                    batch.append(await receiver.receive())
                except EndOfStream:
                    break
                if _fill(receiver, batch, limit):
                    break
        return batch

    def observe(self, size: int, took: float) -> None:
        """Record one batch handed to the user method: its size and the call's time."""
        self.sizes.observe(size)
        self.latency.observe(took)


def _fill(receiver: Receiver, batch: list[Any], limit: int) -> bool:
    """Add what is buffered, up to ``limit``; whether the stream ended (or is full)."""
    while len(batch) < limit:
        try:
            batch.append(receiver.receive_nowait())
        except WouldBlock:
            return False
        except EndOfStream:
            return True
    return True
